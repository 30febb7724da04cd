"""The docker backend of the local engine against the built image: each model family, a
stopped job resumed from its checkpoints, a spot reclaim, a warm pool that keeps its
containers, and the CLI as a user types it (no --quiet)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import boto3
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from local_helpers import run_spec  # noqa: E402

from sm_toolkit.spec import parse_spec  # noqa: E402
from sm_toolkit.train.datasets import write_digits_npz  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEBUG = {"size": "debug", "epochs": 1, "threads": 1}
# Resume equivalence: the CNN without batch norm or dropout is bit-exact on CPU.
RESUME_HPS = {
    "size": "debug",
    "epochs": 40,
    "batch_size": 8,
    "batch_norm": False,
    "dropout": 0.0,
    "seed": 3,
    "threads": 1,
    "checkpoint_every": 2,
}


def job_spec(bucket: str, entry_point: str, hyperparameters: dict, **extra):
    return parse_spec(
        {
            "name": entry_point.removesuffix(".py").replace("_", "-"),
            "entry_point": entry_point,
            "hyperparameters": hyperparameters,
            "image_uri": "sm-toolkit:latest",
            "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
            "instance": {"type": "ml.c5.xlarge"},
            "output_path": f"s3://{bucket}/output",
            **extra,
        },
        base_dir=ROOT,
    )


def model_state(uri: str) -> dict[str, torch.Tensor]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key=key)
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as tar:
        return torch.load(io.BytesIO(tar.extractfile("model.pt").read()), weights_only=True)


def tar_names(s3, uri: str) -> set[str]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return set(tar.getnames())


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["train_cnn.py", "train_rnn.py", "train_moe.py"])
def test_each_model_family_completes_with_its_declared_metrics(
    image, s3, bucket, tmp_path, entry_point
):
    spec = job_spec(bucket, entry_point, DEBUG)
    result = run_spec(
        spec, job_name=spec.name + "-1", workdir=tmp_path, backend="docker", image=image
    )
    assert result.status == "Completed", result.failure_reason
    declared = {m.name for m in spec.metrics}
    assert declared and declared <= set(result.final_metrics), declared - set(result.final_metrics)
    assert result.model_artifacts == f"s3://{bucket}/output/{spec.name}-1/output/model.tar.gz"
    assert "model.pt" in tar_names(s3, result.model_artifacts)
    assert "metrics.json" in tar_names(s3, result.output_artifacts)


@pytest.fixture(scope="module")
def reference(image, moto_endpoint, tmp_path_factory):
    """The uninterrupted CNN job that the resumed ones must end identical to."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="docker-backend-reference")
    spec = job_spec("docker-backend-reference", "train_cnn.py", RESUME_HPS)
    result = run_spec(
        spec,
        job_name="cnn-plain",
        backend="docker",
        image=image,
        workdir=tmp_path_factory.mktemp("reference"),
    )
    assert result.status == "Completed", result.failure_reason
    return result


def assert_same_model(result, reference) -> None:
    assert result.status == "Completed", result.failure_reason
    assert result.metric_series["val:loss"][-1] == reference.metric_series["val:loss"][-1]
    resumed, plain = model_state(result.model_artifacts), model_state(reference.model_artifacts)
    assert resumed.keys() == plain.keys()
    assert all(torch.equal(resumed[k], plain[k]) for k in plain)


@pytest.mark.slow
def test_stopped_job_resumes_from_mounted_checkpoints(image, s3, bucket, tmp_path, reference):
    spec = job_spec(
        bucket, "train_cnn.py", RESUME_HPS, checkpoint={"s3_uri": f"s3://{bucket}/ckpt/cnn"}
    )
    stop = threading.Event()

    def watch(line: str) -> None:
        if "[metrics] epoch=4 " in line:
            stop.set()  # StopTrainingJob, mid-training

    first = run_spec(
        spec,
        job_name="cnn-resume-1",
        workdir=tmp_path,
        backend="docker",
        image=image,
        on_line=watch,
        stop_event=stop,
    )
    assert first.status == "Stopped"
    assert 4 <= len(first.metric_series["val:loss"]) < RESUME_HPS["epochs"]
    saved = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ckpt/cnn/")["Contents"]]
    assert saved, "the container's checkpoints reached S3 through the mounted folder"
    lines: list[str] = []
    second = run_spec(
        spec,
        job_name="cnn-resume-2",
        workdir=tmp_path,
        backend="docker",
        image=image,
        on_line=lines.append,
    )
    assert any("[checkpoint] resumed from ckpt-" in line for line in lines)
    assert_same_model(second, reference)


@pytest.mark.slow
def test_spot_interruption_restarts_on_fresh_containers_and_resumes(
    image, bucket, tmp_path, reference
):
    spec = job_spec(
        bucket, "train_cnn.py", RESUME_HPS, checkpoint={"s3_uri": f"s3://{bucket}/ckpt/spot"}
    )
    lines: list[str] = []
    reclaim = threading.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        if "[metrics] epoch=5 " in line:  # mid-training, after a checkpoint (every 2 epochs)
            reclaim.set()

    result = run_spec(
        spec,
        job_name="cnn-spot",
        workdir=tmp_path,
        backend="docker",
        image=image,
        on_line=on_line,
        interrupt_event=reclaim,
    )
    assert result.interruptions == 1
    restart = next(i for i, line in enumerate(lines) if "restarting cnn-spot" in line)
    before = "\n".join(lines[max(0, restart - 40) : restart + 3])
    assert any("SIGTERM received" in line for line in lines[:restart]), before
    last = f"[metrics] epoch={RESUME_HPS['epochs']} "
    assert not any(last in line for line in lines[:restart]), "the reclaim hit mid-training"
    assert any("[checkpoint] resumed from ckpt-" in line for line in lines[restart:])
    assert_same_model(result, reference)


def running_containers(job: str) -> list[str]:
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=sm-toolkit.job={job}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


@pytest.mark.slow
def test_warm_pool_keeps_the_containers_for_the_next_matching_job(image, s3, bucket, tmp_path):
    data = write_digits_npz(tmp_path / "digits")
    s3.upload_file(str(data), bucket, "data/digits/digits.npz")
    spec = job_spec(
        bucket,
        "train_cnn.py",
        DEBUG,
        inputs={"train": f"s3://{bucket}/data/digits"},
        warm_pool={"keep_alive_seconds": 600},
    )
    first = run_spec(spec, job_name="cnn-wp-1", workdir=tmp_path, backend="docker", image=image)
    kept = running_containers("cnn-wp-1")
    assert first.status == "Completed", first.failure_reason
    assert len(kept) == 1, "the host stays up, Available, after its job"
    second = run_spec(spec, job_name="cnn-wp-2", workdir=tmp_path, backend="docker", image=image)
    assert second.status == "Completed", second.failure_reason
    assert running_containers("cnn-wp-1") == kept and not running_containers("cnn-wp-2")
    doc = json.loads((tmp_path / "jobs/cnn-wp-1/describe.json").read_text())
    assert doc["WarmPoolStatus"]["Status"] == "Reused"
    assert doc["WarmPoolStatus"]["ReusedByJob"] == "cnn-wp-2"
    assert second.final_metrics == first.final_metrics  # same data, same seed
    from sm_toolkit.local.engine import update_training_job

    update_training_job(tmp_path, "cnn-wp-2", 0, backend="docker")  # end the pool now
    assert not running_containers("cnn-wp-1")


@pytest.mark.slow
def test_cli_runs_the_example_with_the_docker_backend(image, s3, tmp_path):
    s3.create_bucket(Bucket="sm-toolkit-demo")
    data = write_digits_npz(tmp_path / "data")
    s3.upload_file(str(data), "sm-toolkit-demo", "data/digits/digits.npz")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sm_toolkit.cli",
            "run",
            str(ROOT / "examples" / "cnn-local.yaml"),
            "--local",
            "--backend",
            "docker",
            "--image",
            image,
            "--workdir",
            str(tmp_path),
            "--set",
            "epochs=1",
            "--set",
            "size=debug",
            "--set",
            "threads=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    assert summary["TrainingJobStatus"] == "Completed"
    assert {m["MetricName"] for m in summary["FinalMetricDataList"]} >= {"val:loss", "test:f1"}
    assert summary["ModelArtifacts"]["S3ModelArtifacts"].startswith("s3://sm-toolkit-demo/output/")
    name = summary["TrainingJobName"]
    out = tmp_path / "jobs" / name / "attempt-0" / "algo-1" / "opt" / "ml" / "output" / "data"
    assert (out / "metrics.json").is_file()
    assert "[metrics]" in proc.stdout  # the log was echoed, as a user sees it


def test_a_daemon_left_in_the_container_does_not_hold_the_job_open(image, s3, bucket, tmp_path):
    """The lifecycle script leaves a double-forked daemon holding its output for 600 s; the
    image's launcher ends it once `train` has no child left, so the job completes."""
    import time

    from test_engine_lifecycle import request, upload_code

    from sm_toolkit.local.engine import run_training_job

    req = request("dk-daemon", bucket, upload_code(s3, bucket), "daemon")
    req["AlgorithmSpecification"]["TrainingImage"] = image
    began = time.monotonic()
    doc = run_training_job(req, workdir=tmp_path, backend="docker", image=image)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert time.monotonic() - began < 90  # the daemon would hold the output 600 s
    log = (tmp_path / "jobs" / "dk-daemon" / "algo-1.log").read_text()
    assert "which it left running" in log
