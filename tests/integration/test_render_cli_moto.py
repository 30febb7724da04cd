"""render's output is the request itself: the AWS CLI takes it with --cli-input-json
(against the moto server on 127.0.0.1); and launch uses the standard region chain and
makes unique names on request. Everything runs as a user types it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _aws_cli() -> str | None:
    """The AWS CLI of this venv (the test extra installs awscli), else one on PATH."""
    beside = Path(sys.executable).with_name("aws")
    return str(beside) if beside.exists() else shutil.which("aws")


def _sm_toolkit(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def example_buckets(s3):
    for name in ("my-ml-bucket", "sm-toolkit-demo"):
        s3.create_bucket(Bucket=name)


@pytest.mark.skipif(_aws_cli() is None, reason="the AWS CLI is not installed")
@pytest.mark.parametrize(
    "example, command",
    [
        ("cnn-spot", "create-training-job"),
        ("tune-rnn-grid", "create-hyper-parameter-tuning-job"),
    ],
)
def test_rendered_request_is_accepted_by_the_aws_cli(tmp_path, moto_endpoint, example, command):
    rendered = _sm_toolkit("render", str(ROOT / "examples" / f"{example}.yaml"), "--upload")
    assert rendered.returncode == 0, rendered.stderr
    request = json.loads(rendered.stdout)  # stdout is the request and nothing else
    (tmp_path / "request.json").write_text(rendered.stdout)
    proc = subprocess.run(
        [
            _aws_cli(),
            "sagemaker",
            command,
            "--cli-input-json",
            f"file://{tmp_path}/request.json",
            "--endpoint-url",
            moto_endpoint,
            "--region",
            "us-east-1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    sm = boto3.client("sagemaker", region_name="us-east-1")
    if command == "create-training-job":
        desc = sm.describe_training_job(TrainingJobName=request["TrainingJobName"])
        hps = desc["HyperParameters"]
    else:
        desc = sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=request["HyperParameterTuningJobName"]
        )
        hps = desc["TrainingJobDefinition"]["StaticHyperParameters"]
    # --upload wrote the code the request names, so the job could really start
    bucket, key = json.loads(hps["sagemaker_submit_directory"])[len("s3://") :].split("/", 1)
    assert boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    assert f"uploaded: s3://{bucket}/{key}" in rendered.stderr


def test_render_without_upload_lists_what_launch_would_upload(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    text = (ROOT / "examples" / "cnn-local.yaml").read_text()
    spec = tmp_path / "spec.yaml"
    text = text.replace("name: cnn-digits-local", "name: render-only-check")
    spec.write_text(text.replace("s3://sm-toolkit-demo/data/digits", "data"))
    proc = _sm_toolkit("render", str(spec))
    assert proc.returncode == 0, proc.stderr
    request = json.loads(proc.stdout)
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert f"launch uploads (render --upload writes them): {channel}" in proc.stderr
    assert "sourcedir.tar.gz" in proc.stderr
    listed = boto3.client("s3").list_objects_v2(
        Bucket="sm-toolkit-demo", Prefix="output/render-only-check/"
    )
    assert listed.get("KeyCount", 0) == 0, "render without --upload writes nothing"


def test_launch_uses_the_region_of_the_environment_and_says_so(moto_endpoint):
    proc = _sm_toolkit(
        "launch",
        str(ROOT / "examples" / "cnn-local.yaml"),
        "--job-name",
        "region-check",
        env={"AWS_DEFAULT_REGION": "eu-west-1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "launching region-check in region eu-west-1" in proc.stderr
    eu = boto3.client("sagemaker", region_name="eu-west-1")
    assert eu.describe_training_job(TrainingJobName="region-check")["TrainingJobName"]
    us = boto3.client("sagemaker", region_name="us-east-1")
    names = [j["TrainingJobName"] for j in us.list_training_jobs()["TrainingJobSummaries"]]
    assert "region-check" not in names


def test_launch_region_option_wins_over_the_environment():
    proc = _sm_toolkit(
        "launch",
        str(ROOT / "examples" / "cnn-local.yaml"),
        "--job-name",
        "region-arg",
        "--region",
        "ap-south-1",
        env={"AWS_DEFAULT_REGION": "eu-west-1"},
    )
    assert proc.returncode == 0, proc.stderr
    sm = boto3.client("sagemaker", region_name="ap-south-1")
    assert sm.describe_training_job(TrainingJobName="region-arg")["TrainingJobStatus"]


def test_unique_names_let_one_spec_launch_twice():
    spec = str(ROOT / "examples" / "tune-rnn-grid.yaml")
    first = _sm_toolkit("launch", spec, "--unique-name")
    second = _sm_toolkit("launch", spec, "--unique-name")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    names = [p.stdout.split()[2].rstrip(":") for p in (first, second)]
    assert names[0] != names[1]
    assert all(n.startswith("rnn-grid") and len(n) <= 32 for n in names), names


def test_render_upload_writes_local_inputs_too():
    proc = _sm_toolkit("render", str(ROOT / "examples" / "byo-script" / "spec.yaml"), "--upload")
    assert proc.returncode == 0, proc.stderr
    definition = json.loads(proc.stdout)["TrainingJobDefinition"]
    uri = definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, prefix = uri[len("s3://") :].split("/", 1)
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ]
    assert keys == [f"{prefix}/train.csv"]
