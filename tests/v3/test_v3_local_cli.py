"""`sm-toolkit run SPEC --local` under SDK v3, as a user with v3 installed types it: the spec
renders through ModelTrainer (its code and sm_drivers channels uploaded to the session's moto
on 127.0.0.1), and the local engine runs v3's launch contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

ROOT = Path(__file__).resolve().parents[2]


def test_run_local_of_a_spec_goes_through_the_engine_with_v3s_contract(moto_endpoint, tmp_path):
    boto3.client("s3").create_bucket(Bucket="v3-local")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: v3-local-job
entry_point: train.py
source_dir: {ROOT / "tests" / "fixtures" / "userscript"}
hyperparameters: {{epochs: 2}}
image_uri: sm-toolkit:latest
role: arn:aws:iam::123456789012:role/SageMakerTrainingRole
instance: {{type: ml.c5.xlarge}}
output_path: s3://v3-local/output
metrics:
  - {{name: "train:loss", regex: "train:loss=([0-9.]+)"}}
"""
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sm_toolkit.cli",
            "run",
            str(spec),
            "--local",
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    doc = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    assert doc["TrainingJobStatus"] == "Completed"
    assert doc["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    channels = {c["ChannelName"] for c in doc["InputDataConfig"]}
    assert {"code", "sm_drivers"} <= channels
    metrics = {m["MetricName"]: m["Value"] for m in doc["FinalMetricDataList"]}
    assert metrics["train:loss"] == 0.5
