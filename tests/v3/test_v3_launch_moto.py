"""launch under SDK v3: every example v3 can express is submitted through ModelTrainer (or
v3's tuner) to the moto server on 127.0.0.1, with STS unreachable.

v3 validates the role with IAM SimulatePrincipalPolicy, which moto lacks: the tests set
SAGEMAKER_VALIDATE_ROLE=false (as a user pointing v3 at moto would) and create the role.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

from sm_toolkit.aws.launch import launch  # noqa: E402
from sm_toolkit.spec import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
V3_EXAMPLES = [
    "cnn-local",
    "cnn-torchrun",
    "moe-smp",
    "tune-cnn-hyperband",
    "tune-moe-bayesian-warmstart",
    "tune-rnn-grid",
]
ROLE = "SageMakerTrainingRole"  # the examples' role, arn:aws:iam::123456789012:role/...
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
# Nothing listens here: a call to STS fails instead of reaching moto (or AWS).
NO_STS = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def v3_on_moto(s3, monkeypatch):
    for name in ("my-ml-bucket", "sm-toolkit-demo"):
        s3.create_bucket(Bucket=name)
    iam = boto3.client("iam", region_name="us-east-1")
    try:
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", NO_STS)


def _sm():
    return boto3.client("sagemaker", region_name="us-east-1")


@pytest.mark.parametrize("example", V3_EXAMPLES)
def test_every_v3_example_launches(example):
    spec = load_spec(ROOT / "examples" / f"{example}.yaml")
    name = f"{example[:20]}-v3"
    launched = launch(spec, job_name=name, sdk="v3")
    if spec.tuning is None:
        assert re.fullmatch(rf"{name}-\d{{14}}", launched.name)  # v3 names it
        assert launched.description["TrainingJobName"] == launched.name
        assert launched.description["TrainingJobStatus"] == "Completed"  # moto finishes at once
    else:
        assert launched.name == name
        assert launched.description["HyperParameterTuningJobName"] == name


def _channels(desc: dict) -> dict[str, str]:
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in desc["InputDataConfig"]
    }


def _keys(s3, uri: str) -> list[str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return [o["Key"][len(prefix) + 1 :] for o in listing.get("Contents", [])]


def test_torchrun_launch_uploads_code_and_sm_drivers_and_runs_sm_train_sh(s3):
    spec = load_spec(ROOT / "examples" / "cnn-torchrun.yaml")
    launched = launch(spec, job_name="cnn-torchrun-v3-check", sdk="v3")
    desc = _sm().describe_training_job(TrainingJobName=launched.name)
    assert desc["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    channels = _channels(desc)
    assert set(channels) == {"train", "code", "sm_drivers"}
    assert "train_cnn.py" in _keys(s3, channels["code"])
    drivers = _keys(s3, channels["sm_drivers"])
    assert {"sm_train.sh", "distributed.json", "sourcecode.json"} <= set(drivers)
    bucket, _, prefix = channels["sm_drivers"][len("s3://") :].partition("/")
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/distributed.json")["Body"].read()
    assert json.loads(body)["process_count_per_node"] == 4
    assert desc["ResourceConfig"]["InstanceCount"] == 2
    assert desc["HyperParameters"] == {"batch_size": "256", "epochs": "20", "lr": "0.002"}


def test_tuning_launch_stages_sourcedir_for_the_legacy_path(s3):
    launch(load_spec(ROOT / "examples" / "tune-cnn-hyperband.yaml"), job_name="hb-v3", sdk="v3")
    desc = _sm().describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hb-v3")
    static = desc["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["sagemaker_program"] == "train_cnn.py"
    bucket, _, key = static["sagemaker_submit_directory"][len("s3://") :].partition("/")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    assert desc["HyperParameterTuningJobConfig"]["Strategy"] == "Hyperband"


def test_local_input_is_uploaded_before_a_v3_launch(tmp_path, s3):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    spec_path = tmp_path / "spec.yaml"
    text = (ROOT / "examples" / "cnn-local.yaml").read_text()
    spec_path.write_text(text.replace("s3://sm-toolkit-demo/data/digits", "data"))
    launched = launch(load_spec(spec_path), job_name="local-input-v3", sdk="v3")
    desc = _sm().describe_training_job(TrainingJobName=launched.name)
    uri = _channels(desc)["train"]
    assert uri == "s3://sm-toolkit-demo/output/local-input-v3/input/train"
    assert _keys(s3, uri) == ["rows.csv"]


def test_cli_launch_as_typed_reports_the_v3_job_name():
    env = dict(os.environ, SAGEMAKER_VALIDATE_ROLE="false", AWS_ENDPOINT_URL_STS=NO_STS)
    cmd = [
        sys.executable,
        "-m",
        "sm_toolkit.cli",
        "launch",
        str(ROOT / "examples" / "cnn-local.yaml"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"training job cnn-digits-local-\d{14}: Completed", done.stdout.strip())
    # no SDK chatter, no notes for this spec: only the line naming the region it used
    assert done.stderr.strip() == "sm-toolkit: launching cnn-digits-local in region us-east-1"


def test_launch_wait_returns_once_moto_reports_completed():
    spec = load_spec(ROOT / "examples" / "cnn-local.yaml")
    launched = launch(spec, job_name="cnn-wait-v3", wait=True, sdk="v3")
    assert launched.description["TrainingJobStatus"] == "Completed"
    tuning = load_spec(ROOT / "examples" / "tune-rnn-grid.yaml")
    done = launch(tuning, job_name="grid-wait-v3", wait=True, sdk="v3")
    assert done.description["HyperParameterTuningJobStatus"] == "Completed"
