"""Kept interpreters on the process backend: a warm pool's started ``train`` worker, and a
tuning job's spare workers (which are not a warm pool).

What a user would see if this broke: the second job of a warm pool starting as slowly as the
first (no worker kept), a job in a kept worker writing to the previous job's folders or the
default /opt/ml (its model missing from S3), a worker left running after the pool ended, a
stop that never reaches the script, or a dead worker failing the next job instead of a cold
start.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import psutil
import pytest
from test_engine_lifecycle import request, upload_code

from sm_toolkit.local.engine import TrainingJob, run_training_job, update_training_job

pytestmark = pytest.mark.integration
WORKER = "sm_toolkit.local.backends.worker"


@pytest.fixture
def code(s3, bucket):
    return upload_code(s3, bucket)


def warm(name: str, bucket: str, code: str, mode: str = "env", keep: int = 60) -> dict:
    return request(name, bucket, code, mode, ResourceConfig={"KeepAlivePeriodInSeconds": keep})


def kept_worker(workdir: Path, job: str) -> psutil.Process:
    """The worker a finished job's Available pool keeps for its host."""
    (meta,) = workdir.glob(f"warm-pools/available/*-{job}/pool.json")
    data = json.loads(meta.read_text())["kept"]["workers"]["algo-1"]
    proc = psutil.Process(data["pid"])
    assert WORKER in " ".join(proc.cmdline())
    return proc


def parent_line(lines: list[str]) -> tuple[int, str]:
    line = next(x for x in lines if x.startswith("parent="))
    pid, _, command = line[len("parent=") :].partition(" ")
    return int(pid), command


def gone_within(proc: psutil.Process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def model_files(s3, bucket: str, job: str) -> list[str]:
    body = s3.get_object(Bucket=bucket, Key=f"output/{job}/output/model.tar.gz")["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        return sorted(tar.getnames())


def test_the_next_matching_job_runs_in_the_kept_worker_with_its_own_paths(
    s3, bucket, code, tmp_path, monkeypatch
):
    monkeypatch.setenv("MY_LAPTOP_SECRET", "do-not-leak")
    first = run_training_job(warm("wk-first", bucket, code), workdir=tmp_path)
    assert first["WarmPoolStatus"]["Status"] == "Available", first.get("FailureReason")
    worker = kept_worker(tmp_path, "wk-first")

    lines: list[str] = []
    second = run_training_job(
        warm("wk-second", bucket, code), workdir=tmp_path, on_line=lines.append
    )
    assert second["TrainingJobStatus"] == "Completed", second.get("FailureReason")
    pid, command = parent_line(lines)
    assert (pid, WORKER in command) == (worker.pid, True)  # train ran in the kept worker
    # ... with this job's folders: its model is in this job's artifacts, not the first's
    assert "model.txt" in model_files(s3, bucket, "wk-second")
    seen = json.loads(next(x for x in lines if x.startswith("ENV "))[4:])
    assert "MY_LAPTOP_SECRET" not in seen and "SM_MODEL_DIR" in seen
    first_doc = json.loads((tmp_path / "jobs/wk-first/describe.json").read_text())
    pool = first_doc["WarmPoolStatus"]
    assert (pool["Status"], pool["ReusedByJob"]) == ("Reused", "wk-second")

    # the second job keeps a fresh worker; UpdateTrainingJob with 0 ends it at once
    fresh = kept_worker(tmp_path, "wk-second")
    assert fresh.pid != worker.pid
    doc = update_training_job(tmp_path, "wk-second", 0)
    assert doc["WarmPoolStatus"]["Status"] == "Terminated"
    assert gone_within(fresh, 5)


def test_a_cold_job_starts_train_itself(bucket, code, tmp_path):
    lines: list[str] = []
    doc = run_training_job(
        request("wk-cold", bucket, code, "env"), workdir=tmp_path, on_line=lines.append
    )
    assert doc["TrainingJobStatus"] == "Completed"
    _, command = parent_line(lines)
    assert "sm_toolkit.runtime.train_entry" in command and WORKER not in command
    assert not list(tmp_path.glob("warm-pools/available/*"))


def test_a_dead_kept_worker_means_a_cold_start_not_a_failed_job(bucket, code, tmp_path):
    run_training_job(warm("wk-dead-1", bucket, code), workdir=tmp_path)
    worker = kept_worker(tmp_path, "wk-dead-1")
    worker.kill()
    assert gone_within(worker, 5)
    lines: list[str] = []
    doc = run_training_job(warm("wk-dead-2", bucket, code), workdir=tmp_path, on_line=lines.append)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert "sm_toolkit.runtime.train_entry" in parent_line(lines)[1]
    update_training_job(tmp_path, "wk-dead-2", 0)


def test_stop_reaches_the_script_in_a_kept_worker(s3, bucket, code, tmp_path):
    run_training_job(warm("wk-stop-1", bucket, code), workdir=tmp_path)
    worker = kept_worker(tmp_path, "wk-stop-1")
    job = TrainingJob(warm("wk-stop-2", bucket, code, "sleep"), workdir=tmp_path).start()
    deadline = time.monotonic() + 60
    while not job.metric_series:  # the script is running (in the worker)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert worker.children(), "the script runs under the kept worker"
    stopped_at = time.monotonic()
    job.stop()
    doc = job.wait(60)
    assert time.monotonic() - stopped_at < 10
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert "stopped.txt" in model_files(s3, bucket, "wk-stop-2")  # saved on SIGTERM
    assert gone_within(worker, 5)  # a worker serves one job
    update_training_job(tmp_path, "wk-stop-2", 0)


def test_a_kept_worker_ends_itself_when_the_keep_alive_runs_out(bucket, code, tmp_path):
    run_training_job(warm("wk-expire", bucket, code, keep=2), workdir=tmp_path)
    worker = kept_worker(tmp_path, "wk-expire")
    assert gone_within(worker, 8)


def test_tuning_trials_run_in_spare_workers_that_end_with_the_tuning_job(
    s3, bucket, code, tmp_path
):
    from sm_toolkit.local.tuning import run_local_tuning

    trial = request("unused", bucket, code, "env")
    tuning = {
        "HyperParameterTuningJobName": "wk-tune",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "progress"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "seconds", "MinValue": "0", "MaxValue": "1"}]
            },
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": trial["HyperParameters"],
            "AlgorithmSpecification": trial["AlgorithmSpecification"],
            "RoleArn": trial["RoleArn"],
            "OutputDataConfig": trial["OutputDataConfig"],
            "ResourceConfig": trial["ResourceConfig"],
            "StoppingCondition": trial["StoppingCondition"],
        },
    }
    before = {p.pid for p in psutil.process_iter() if WORKER in " ".join(_cmdline(p))}
    result = run_local_tuning(tuning, workdir=tmp_path, log=lambda line: None)
    assert [t.status for t in result.trials] == ["Completed"] * 3
    logs = sorted(tmp_path.glob("tuning/wk-tune/**/algo-1.log"))
    assert len(logs) == 3
    for log in logs:
        assert WORKER in parent_line(log.read_text().splitlines())[1], log
    for doc in tmp_path.glob("tuning/wk-tune/**/describe.json"):
        assert "WarmPoolStatus" not in json.loads(doc.read_text())  # not a warm pool
    time.sleep(0.5)
    after = {p.pid for p in psutil.process_iter() if WORKER in " ".join(_cmdline(p))}
    assert after <= before  # the spares ended with the tuning job


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
