"""The local engine runs SDK v3's launch contract: a real ModelTrainer request (ContainerEntrypoint
+ the sm_drivers channel, uploaded to the session's moto by v3 itself), on both backends, and a
SIGTERM reaches the user's script (it saves and the saved file is uploaded)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

from sm_toolkit.local.engine import JobEvents, TrainingJob  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "v3" / "capture_request.py"
LIFECYCLE = ROOT / "tests" / "fixtures" / "lifecycle"
IMAGE = os.environ.get("SM_TOOLKIT_IMAGE", "sm-toolkit:latest")


def capture(endpoint: str, tmp_path: Path, mode: str, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--endpoint",
            endpoint,
            "--bucket",
            "v3-engine",
            "--source-dir",
            str(LIFECYCLE),
            "--entry-script",
            "train.py",
            "--instance-count",
            "1",
            "--hyperparameter",
            f"mode={mode}",
            "--job-name",
            name,
            "--image",
            IMAGE,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def docker_ready() -> bool:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    if probe.returncode != 0 and os.environ.get("CI") == "true":
        pytest.fail(f"CI must have built {IMAGE}", pytrace=False)
    return probe.returncode == 0


BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.container)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_v3_request_completes_on_each_backend(moto_endpoint, tmp_path, backend):
    if backend == "docker" and not docker_ready():
        pytest.skip(f"docker or {IMAGE} missing")
    req = capture(moto_endpoint, tmp_path, "env", f"v3-ok-{backend}")
    assert req["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    job = TrainingJob(req, workdir=tmp_path / "w", backend=backend, image=IMAGE).start()
    doc = job.wait(600)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    key = doc["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
    body = boto3.client("s3").get_object(Bucket="v3-engine", Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("model.txt").read() == b"trained"


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_reaches_the_script_under_the_v3_contract(moto_endpoint, tmp_path, backend):
    if backend == "docker" and not docker_ready():
        pytest.skip(f"docker or {IMAGE} missing")
    req = capture(moto_endpoint, tmp_path, "sleep", f"v3-stop-{backend}")
    started, got_term = threading.Event(), threading.Event()

    def line(host: str, text: str) -> None:
        if text.strip().endswith("started"):
            started.set()
        if "got SIGTERM" in text:
            got_term.set()

    job = TrainingJob(
        req, workdir=tmp_path / "w", backend=backend, image=IMAGE, events=JobEvents(on_line=line)
    ).start()
    assert started.wait(300), "the script never started"
    stopped_at = time.monotonic()
    job.stop()
    assert got_term.wait(30)
    assert time.monotonic() - stopped_at < 2.0 + 3.0  # 2 s, plus docker exec's own start-up
    doc = job.wait(120)
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "Stopped")
    key = doc["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
    body = boto3.client("s3").get_object(Bucket="v3-engine", Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("stopped.txt").read() == b"saved on SIGTERM"
