"""The local engine, process backend, from a spec: real `train` launcher, relocated /opt/ml,
moto S3 on 127.0.0.1."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from pathlib import Path

import pytest
from local_helpers import assert_valid_describe, user_spec
from local_helpers import run_spec as run_job

from sm_toolkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "userscript"
pytestmark = pytest.mark.integration


def _tar_names(s3, uri: str) -> list[str]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return sorted(tar.getnames())


def test_job_runs_through_the_container_contract(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="data/train/a.csv", Body=b"1")
    s3.put_object(Bucket=bucket, Key="data/train/sub/b.csv", Body=b"2")
    local = tmp_path / "extra"
    local.mkdir()
    (local / "c.txt").write_text("3")
    spec = user_spec(bucket, inputs={"train": f"s3://{bucket}/data/train", "extra": str(local)})
    lines: list[str] = []
    result = run_job(spec, job_name="user-job-1", workdir=tmp_path, on_line=lines.append)

    assert result.status == "Completed", result.failure_reason
    assert result.metric_series["train:loss"] == [2.0, 1.0, 0.6667]
    assert result.final_metrics["train:loss"] == 0.6667
    assert "channel train: ['a.csv', 'sub/b.csv']" in lines
    assert "channel extra: ['c.txt']" in lines
    # the SDK's own hyperparameters; the code is staged into /opt/ml/code, as SageMaker does
    hps = json.loads((result.base_dir / "input/config/hyperparameters.json").read_text())
    assert hps["sagemaker_program"] == '"train.py"'
    assert json.loads(hps["sagemaker_submit_directory"]) == str(result.base_dir / "code")
    assert (result.base_dir / "code" / "train.py").read_bytes() == (
        FIXTURE / "train.py"
    ).read_bytes()
    assert hps["scale"] == "2.0"
    assert (result.base_dir / "output" / "success").exists()
    assert result.model_artifacts == f"s3://{bucket}/output/user-job-1/output/model.tar.gz"
    assert _tar_names(s3, result.model_artifacts) == ["weights.txt"]
    assert _tar_names(s3, result.output_artifacts) == ["report.json"]


def test_hyperparameter_overrides_reach_the_script(bucket, tmp_path):
    result = run_job(
        user_spec(bucket),
        job_name="user-job-2",
        workdir=tmp_path,
        hyperparameters={"scale": 4.0, "epochs": 1},
    )
    assert result.metric_series["train:loss"] == [4.0]


def test_failing_script_fails_the_job_with_its_reason(bucket, tmp_path):
    result = run_job(
        user_spec(bucket, hyperparameters={"mode": "fail"}), job_name="user-fail", workdir=tmp_path
    )
    assert result.status == "Failed"
    assert "learning rate too spicy" in result.failure_reason
    assert len(result.failure_reason) <= 1024


def test_stop_event_stops_the_job_like_stop_training_job(bucket, tmp_path):
    stop = threading.Event()
    threading.Timer(6.0, stop.set).start()
    began = time.monotonic()
    result = run_job(
        user_spec(bucket, hyperparameters={"mode": "sleep"}),
        job_name="user-stop",
        workdir=tmp_path,
        stop_event=stop,
    )
    assert result.status == "Stopped"
    assert time.monotonic() - began < 40  # the script would sleep 60 s


def test_checkpoints_are_restored_before_and_uploaded_after(s3, bucket, tmp_path):
    spec = user_spec(bucket, checkpoint={"s3_uri": f"s3://{bucket}/ckpt/user"})
    first = run_job(spec, job_name="user-ckpt-1", workdir=tmp_path)
    second = run_job(spec, job_name="user-ckpt-2", workdir=tmp_path)
    assert first.final_metrics["previous_runs"] == 0
    assert second.final_metrics["previous_runs"] == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ckpt/")["Contents"]]
    assert keys == ["ckpt/user/run-0.txt", "ckpt/user/run-1.txt"]


def test_missing_s3_input_fails_the_job_with_a_clear_reason(bucket, tmp_path):
    spec = user_spec(bucket, inputs={"train": f"s3://{bucket}/nothing/here"})
    result = run_job(spec, job_name="user-noinput", workdir=tmp_path)
    assert result.status == "Failed"
    assert result.failure_reason == f"channel train: no objects under s3://{bucket}/nothing/here"


def test_smddp_is_refused_locally_with_the_reason(bucket, tmp_path):
    spec = user_spec(bucket, distribution={"type": "smddp"}, instance={"type": "ml.p4d.24xlarge"})
    with pytest.raises(ConfigError, match="needs NVIDIA GPUs"):
        run_job(spec, job_name="user-smddp", workdir=tmp_path)


@pytest.mark.slow
def test_cli_runs_the_cnn_example_locally_and_it_learns(s3, tmp_path):
    """The demo's job through the CLI: digits from (moto) S3, the real CNN entrypoint."""
    import subprocess
    import sys

    from sm_toolkit.train.datasets import write_digits_npz

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
            "--local",  # as a user types it: the job's log is echoed, then its description
            "--workdir",
            str(tmp_path),
            "--set",
            "epochs=4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    assert summary["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in summary["FinalMetricDataList"]}
    assert metrics["val:accuracy"] >= 0.95
    name = summary["TrainingJobName"]
    out = tmp_path / "jobs" / name / "attempt-0" / "algo-1" / "opt" / "ml" / "output" / "data"
    assert (out / "confusion_matrix.png").stat().st_size > 1000


def test_spot_interruption_restarts_and_resumes_from_checkpoints(s3, bucket, tmp_path):
    spec = user_spec(
        bucket,
        hyperparameters={"mode": "resume", "epochs": 12},
        checkpoint={"s3_uri": f"s3://{bucket}/ckpt/resume"},
        metrics=[
            {"name": "epoch", "regex": r"epoch=([0-9]+)"},
            {"name": "running_sum", "regex": r"running_sum=([0-9.]+)"},
        ],
    )
    lines: list[str] = []
    result = run_job(
        spec, job_name="user-spot", workdir=tmp_path, interrupt_after=2.5, on_line=lines.append
    )
    assert result.status == "Completed", result.failure_reason
    assert result.interruptions == 1
    assert_valid_describe(result.doc)
    statuses = [t["Status"] for t in result.doc["SecondaryStatusTransitions"]]
    assert statuses[statuses.index("Interrupted") + 1] == "Restarting"
    assert any("spot interruption" in line for line in lines)
    epochs = [int(e) for e in result.metric_series["epoch"]]
    assert epochs == list(range(1, 13)), "every epoch exactly once: the restart resumed"
    restart = next(i for i, line in enumerate(lines) if "restarting user-spot" in line)
    first_attempt = [line for line in lines[:restart] if "running_sum=" in line]
    assert 0 < len(first_attempt) < 12, "the reclaim hit mid-training"
    assert any("state saved" in line for line in lines[:restart])
    uninterrupted = sum(e * 1.0 for e in range(12))
    assert result.final_metrics["running_sum"] == uninterrupted
    assert s3.get_object(Bucket=bucket, Key="ckpt/resume/state.json")["ContentLength"] > 0


def test_two_hosts_train_together_over_gloo(bucket, tmp_path):
    spec = user_spec(
        bucket,
        hyperparameters={"mode": "ddp", "epochs": 1},
        instance={"type": "ml.c5.xlarge", "count": 2},
        distribution={"type": "torch_distributed"},
        metrics=[
            {"name": "allreduce", "regex": r"allreduce=([0-9.]+)"},
            {"name": "world", "regex": r"world=([0-9]+)"},
        ],
    )
    lines: list[str] = []
    result = run_job(spec, job_name="user-2hosts", workdir=tmp_path, on_line=lines.append)
    assert result.status == "Completed", result.failure_reason
    assert result.metric_series["world"] == [2.0, 2.0]
    assert result.metric_series["allreduce"] == [3.0, 3.0]  # ranks 1 + 2 on both hosts
    hosts = {line.split(" | ")[0] for line in lines if "allreduce=" in line}
    assert hosts == {"algo-1", "algo-2"}


def test_warm_pool_is_reused_by_the_next_job_with_matching_resources(s3, bucket, tmp_path):
    """SageMaker matches pools on resource settings, not code or data: a second job with new
    data takes the pool (and its persistent cache folder); other instances do not."""
    s3.put_object(Bucket=bucket, Key="data/wp/a.csv", Body=b"1" * 1000)
    spec = user_spec(
        bucket, inputs={"train": f"s3://{bucket}/data/wp"}, warm_pool={"keep_alive_seconds": 600}
    )
    first = run_job(spec, job_name="user-wp-1", workdir=tmp_path)
    cache = first.base_dir / "sagemaker" / "warmpoolcache"
    (cache / "pip-cache.txt").write_text("kept")  # what a job leaves in the cache folder
    s3.put_object(Bucket=bucket, Key="data/wp/a.csv", Body=b"2" * 1000)  # new data: reused
    second = run_job(spec, job_name="user-wp-2", workdir=tmp_path)
    assert (first.warm_pool, second.warm_pool) == ("Available", "Available")
    first_doc = json.loads((tmp_path / "jobs/user-wp-1/describe.json").read_text())
    assert first_doc["WarmPoolStatus"] == {
        "Status": "Reused",
        "ReusedByJob": "user-wp-2",
        "ResourceRetainedBillableTimeInSeconds": 0,
    }
    assert (second.base_dir / "input/data/train/a.csv").read_bytes() == b"2" * 1000
    assert (second.base_dir / "sagemaker/warmpoolcache/pip-cache.txt").read_text() == "kept"
    other = user_spec(
        bucket, instance={"type": "ml.c5.2xlarge"}, warm_pool={"keep_alive_seconds": 600}
    )
    third = run_job(other, job_name="user-wp-3", workdir=tmp_path)
    assert not (third.base_dir / "sagemaker/warmpoolcache/pip-cache.txt").exists()
