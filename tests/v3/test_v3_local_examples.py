"""Under SDK v3, every example that runs locally runs through the engine, as a user with v3
installed types it (`run EXAMPLE --local`, debug sizes), and a spec's tuning section tunes
locally (`tune --local`'s path: v3's tuning request, its trials on the engine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("SM_TOOLKIT_IMAGE", "sm-toolkit:latest")
DEBUG = ["--set", "size=debug", "--set", "epochs=1", "--set", "threads=1"]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "quadratic"))


def digits_in(bucket: str, tmp_path: Path) -> None:
    from sm_toolkit.train.datasets import write_digits_npz

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    data = write_digits_npz(tmp_path / "digits")
    s3.upload_file(str(data), bucket, "data/digits/digits.npz")


# cnn-spot (Debugger rules), moe-smddp and rnn-pytorchddp (SMDDP) are refused under v3 in
# one line (tests/v3/test_v3_render.py); cnn-torchrun's two hosts need the docker backend.
EXAMPLES = [
    ("cnn-local.yaml", "sm-toolkit-demo", []),
    pytest.param(
        "cnn-torchrun.yaml",
        "my-ml-bucket",
        ["--backend", "docker", "--image", IMAGE],
        marks=pytest.mark.container,
    ),
]


@pytest.mark.parametrize(("example", "bucket", "backend"), EXAMPLES)
def test_example_runs_locally_under_v3(moto_endpoint, tmp_path, example, bucket, backend):
    if (
        backend
        and subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode
        != 0
    ):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have built {IMAGE}", pytrace=False)
        pytest.skip(f"docker or {IMAGE} missing")
    digits_in(bucket, tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sm_toolkit.cli",
            "run",
            str(ROOT / "examples" / example),
            "--local",
            "--workdir",
            str(tmp_path / "w"),
            *DEBUG,
            *backend,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-3000:]
    doc = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    assert doc["TrainingJobStatus"] == "Completed"
    assert doc["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    metrics = {m["MetricName"] for m in doc["FinalMetricDataList"]}
    assert {"val:loss", "test:accuracy"} <= metrics


def test_tuning_runs_locally_under_v3(moto_endpoint, tmp_path):
    from quadratic_support import make_spec

    from sm_toolkit.aws.local_request import localize_request, render_for_local
    from sm_toolkit.local.tuning import run_local_tuning

    boto3.client("s3").create_bucket(Bucket="sm-toolkit-test")
    spec = make_spec(max_jobs=2, max_parallel_jobs=1, epochs=2, sleep=0.05)
    request = localize_request(render_for_local(spec, None, "v3"), spec)
    definition = request["TrainingJobDefinition"]
    assert any(c["ChannelName"] == "sm_drivers" for c in definition["InputDataConfig"])
    result = run_local_tuning(request, workdir=tmp_path, log=lambda line: None)
    assert [t.status for t in result.trials] == ["Completed", "Completed"]
    assert result.best is not None and result.best.objective is not None
