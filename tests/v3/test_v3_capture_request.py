"""tests/v3/capture_request.py, run as the engine tests run it: a subprocess of the v3
venv's python against the session's moto server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "v3" / "capture_request.py"
USERSCRIPT = ROOT / "tests" / "fixtures" / "userscript"


def _capture(endpoint: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--endpoint",
        endpoint,
        "--bucket",
        "v3-capture",
        "--source-dir",
        str(USERSCRIPT),
        "--entry-script",
        "train.py",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_torchrun_request_has_v3_entrypoint_and_channels_uploaded_to_moto(moto_endpoint, tmp_path):
    out = tmp_path / "request.json"
    done = _capture(
        moto_endpoint,
        out,
        "--instance-count",
        "2",
        "--torchrun",
        "--process-count-per-node",
        "3",
        "--hyperparameter",
        "epochs=2",
        "--input",
        "train=s3://v3-capture/data/digits",
    )
    assert done.returncode == 0, done.stderr
    req = json.loads(out.read_text())
    spec = req["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"] == ["/bin/bash"]
    assert "/opt/ml/input/data/sm_drivers/sm_train.sh" in spec["ContainerArguments"][-1]
    assert req["HyperParameters"] == {"epochs": "2"}  # no sagemaker_* keys under v3
    assert req["ResourceConfig"]["InstanceCount"] == 2
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]
    }
    assert set(channels) == {"train", "code", "sm_drivers"}
    s3 = boto3.client("s3", region_name="us-east-1")
    drivers = channels["sm_drivers"][len("s3://v3-capture/") :]
    body = s3.get_object(Bucket="v3-capture", Key=f"{drivers}/distributed.json")["Body"]
    assert json.loads(body.read())["process_count_per_node"] == 3
    script = s3.get_object(Bucket="v3-capture", Key=f"{drivers}/sm_train.sh")["Body"].read()
    assert b"torchrun_driver.py" in script
    code = channels["code"][len("s3://v3-capture/") :]
    assert s3.head_object(Bucket="v3-capture", Key=f"{code}/train.py")["ContentLength"] > 0
    # stopped before sending: moto holds no such job
    sm = boto3.client("sagemaker", region_name="us-east-1")
    names = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert req["TrainingJobName"] not in names


def test_single_instance_without_torchrun_has_empty_distributed_json(moto_endpoint, tmp_path):
    out = tmp_path / "request.json"
    done = _capture(moto_endpoint, out)
    assert done.returncode == 0, done.stderr
    req = json.loads(out.read_text())
    drivers = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    key = drivers["DataSource"]["S3DataSource"]["S3Uri"][len("s3://v3-capture/") :]
    body = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket="v3-capture", Key=f"{key}/distributed.json"
    )["Body"]
    assert json.loads(body.read()) == {}


def test_mpi_request_writes_the_mpi_driver_config(moto_endpoint, tmp_path):
    out = tmp_path / "request.json"
    done = _capture(
        moto_endpoint, out, "--instance-count", "2", "--mpi", "--process-count-per-node", "2"
    )
    assert done.returncode == 0, done.stderr
    req = json.loads(out.read_text())
    drivers = next(c for c in req["InputDataConfig"] if c["ChannelName"] == "sm_drivers")
    key = drivers["DataSource"]["S3DataSource"]["S3Uri"][len("s3://v3-capture/") :]
    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket="v3-capture", Key=f"{key}/distributed.json")["Body"]
    assert json.loads(body.read())["process_count_per_node"] == 2
    script = s3.get_object(Bucket="v3-capture", Key=f"{key}/sm_train.sh")["Body"].read()
    assert b"mpi_driver.py" in script


def test_bad_pair_is_one_line(moto_endpoint, tmp_path):
    done = _capture(moto_endpoint, tmp_path / "r.json", "--hyperparameter", "epochs")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["--hyperparameter: 'epochs' is not KEY=VALUE"]
