"""The real CNN entrypoint through the process backend: two hosts agree with one, and a
job stopped mid-training resumes from its S3 checkpoints to the same model."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path

import pytest
import torch
from local_helpers import run_spec as run_job

from sm_toolkit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Equivalence tolerance: gradient all-reduce sums in another order than one process does.
TOLERANCE = 2e-3


def cnn_spec(bucket: str, **extra):
    hps = {
        "size": "debug",
        "epochs": 4,
        "batch_norm": False,
        "dropout": 0.0,
        "seed": 3,
        "threads": 1,
    }
    hps.update(extra.pop("hyperparameters", {}))
    return parse_spec(
        {
            "name": "cnn",
            "entry_point": "train_cnn.py",
            "hyperparameters": hps,
            "image_uri": "sm-toolkit:latest",
            "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
            "instance": {"type": "ml.c5.xlarge"},
            "output_path": f"s3://{bucket}/output",
            **extra,
        },
        base_dir=ROOT,
    )


def model_state(s3, uri: str) -> dict[str, torch.Tensor]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    with tarfile.open(
        fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    ) as tar:
        return torch.load(io.BytesIO(tar.extractfile("model.pt").read()), weights_only=True)


def test_two_hosts_agree_with_one_host_on_the_same_global_batch(s3, bucket, tmp_path):
    one = run_job(cnn_spec(bucket), job_name="cnn-one", workdir=tmp_path)
    two = run_job(
        cnn_spec(
            bucket,
            instance={"type": "ml.c5.xlarge", "count": 2},
            distribution={"type": "torch_distributed"},
        ),
        job_name="cnn-two",
        workdir=tmp_path,
    )
    assert (one.status, two.status) == ("Completed", "Completed"), two.failure_reason
    for name in ("train:loss", "val:loss"):
        a, b = one.metric_series[name], two.metric_series[name]
        assert len(a) == len(b)
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < TOLERANCE, (name, a, b)


def test_stopped_job_resumes_from_checkpoints_to_the_uninterrupted_model(s3, bucket, tmp_path):
    hps = {"epochs": 12, "checkpoint_every": 2}  # epochs take ~0.1 s: room for the stop
    plain = run_job(cnn_spec(bucket, hyperparameters=hps), job_name="cnn-plain", workdir=tmp_path)
    assert plain.status == "Completed", plain.failure_reason

    spec = cnn_spec(bucket, hyperparameters=hps, checkpoint={"s3_uri": f"s3://{bucket}/ckpt/cnn"})
    stop = threading.Event()

    def watch(line: str) -> None:
        if "[metrics] epoch=2 " in line:
            stop.set()  # like StopTrainingJob or a reclaim, mid-training

    first = run_job(spec, job_name="cnn-resume", workdir=tmp_path, on_line=watch, stop_event=stop)
    assert first.status == "Stopped"
    assert 2 <= len(first.metric_series["val:loss"]) < 12
    second = run_job(spec, job_name="cnn-resume-2", workdir=tmp_path)
    assert second.status == "Completed", second.failure_reason
    assert second.metric_series["val:loss"][-1] == plain.metric_series["val:loss"][-1]
    resumed, reference = (
        model_state(s3, second.model_artifacts),
        model_state(s3, plain.model_artifacts),
    )
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


@pytest.mark.parametrize("entry_point", ["train_rnn.py", "train_moe.py"])
def test_language_models_train_through_the_local_runner(entry_point, s3, bucket, tmp_path):
    spec = parse_spec(
        {
            "name": "lm",
            "entry_point": entry_point,
            "hyperparameters": {"size": "debug", "epochs": 1, "threads": 1},
            "image_uri": "sm-toolkit:latest",
            "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
            "instance": {"type": "ml.c5.xlarge"},
            "output_path": f"s3://{bucket}/output",
            "rules": ["loss_not_decreasing"],
        },
        base_dir=ROOT,
    )
    result = run_job(spec, job_name=entry_point.replace("_", "-")[:-3], workdir=tmp_path)
    assert result.status == "Completed", result.failure_reason
    declared = {m.name for m in spec.metrics}
    assert declared <= set(result.final_metrics), declared - set(result.final_metrics)
    assert result.final_metrics["val:perplexity"] > 1.0
    log = result.log_path.read_text()
    assert "[rule] loss_not_decreasing:" in log  # the spec's rule was evaluated locally
