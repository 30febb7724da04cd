"""Experiment tracking of local jobs: every job is an MLflow run, in the work folder's embedded
store by default or wherever the request's MLFLOW_TRACKING_URI points (a real MLflow server on
127.0.0.1 here). Real engine, process backend, moto S3 on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_helpers import run_spec, user_spec

from sm_toolkit.local import tracking

mlflow = pytest.importorskip("mlflow")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _runs(uri: str, experiment: str = "sm-toolkit"):
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


@pytest.mark.slow
def test_run_local_from_the_cli_is_an_mlflow_run_in_the_default_store(s3, tmp_path):
    """As a user types it: `sm-toolkit run examples/cnn-local.yaml --local`, no settings."""
    from sm_toolkit.train.datasets import write_digits_npz

    s3.create_bucket(Bucket="sm-toolkit-demo")
    data = write_digits_npz(tmp_path / "data")
    s3.upload_file(str(data), "sm-toolkit-demo", "data/digits/digits.npz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "run", str(ROOT / "examples/cnn-local.yaml")]
        + ["--local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout[proc.stdout.rindex('{\n  "TrainingJobName"') :])
    store = tmp_path / ".sm-toolkit" / "mlflow" / "mlflow.db"
    assert store.is_file()
    (run,) = _runs(f"sqlite:///{store}")
    assert run.info.run_name == doc["TrainingJobName"]
    assert run.info.status == "FINISHED"
    final = {m["MetricName"]: m["Value"] for m in doc["FinalMetricDataList"]}
    assert run.data.metrics == final  # exactly: the same values the metric regexes read
    assert run.data.params == {"epochs": "12", "lr": "0.003", "batch_size": "64"}
    tags = run.data.tags
    assert tags["sagemaker.training_job_arn"] == doc["TrainingJobArn"]
    assert tags["sagemaker.training_job_name"] == doc["TrainingJobName"]
    assert (tags["sagemaker.instance_type"], tags["sagemaker.instance_count"]) == (
        "ml.c5.xlarge",
        "1",
    )
    assert tags["sagemaker.status"] == "Completed" and tags["sagemaker.sdk"] == "v2"
    assert tags["sagemaker.distribution"] == "none"
    assert tags["sagemaker.spot_interruptions"] == "0"
    assert tags["sagemaker.hp.sagemaker_program"] == "train_cnn.py"  # SageMaker's own: a tag
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    history = client.get_metric_history(run.info.run_id, "val:loss")
    assert [m.step for m in history] == list(range(1, 13))  # one a epoch, in order
    names = _artifacts(client, run.info.run_id)
    assert {"request.json", "model/model.tar.gz", "output/metrics.json"} <= set(names)
    assert {"output/loss_curves.png", "output/confusion_matrix.png"} <= set(names)
    # The trainer in the job logged what only it knows into the same run (no second run).
    assert tags["sm-toolkit.model_family"] == "cnn"
    assert int(tags["sm-toolkit.model_parameters"]) > 1000
    assert tags["sm-toolkit.torch_version"].startswith("2.13")
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(tmp_path / ".sm-toolkit" / "mlflow" / "artifacts")


def test_a_failed_job_is_a_failed_run_with_its_reason(bucket, tmp_path):
    spec = user_spec(bucket, hyperparameters={"mode": "fail"})
    result = run_spec(spec, job_name="user-fail", workdir=tmp_path)
    assert result.status == "Failed"
    (run,) = _runs(tracking.default_uri(tmp_path))
    assert run.info.status == "FAILED"
    assert run.data.tags["sagemaker.status"] == "Failed"
    assert "learning rate too spicy" in run.data.tags["sagemaker.failure_reason"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, proc, seconds: float = 120) -> str:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server ended"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url}")


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite backend of its own."""
    port = _free_port()
    root = tmp_path / "server"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", "1", "--backend-store-uri", f"sqlite:///{root}/db.sqlite"]
        + ["--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow  # an MLflow server takes 20-40 s to start on this shared machine
def test_a_job_with_a_tracking_uri_logs_to_that_server(bucket, tmp_path, mlflow_server):
    spec = user_spec(bucket, tracking={"uri": mlflow_server, "experiment": "team"})
    result = run_spec(spec, job_name="user-server", workdir=tmp_path / "w")
    assert result.status == "Completed", result.failure_reason
    assert not (tmp_path / "w" / "mlflow").exists()  # nothing in the embedded store
    (run,) = _runs(mlflow_server, "team")
    assert run.info.run_name == "user-server" and run.info.status == "FINISHED"
    assert run.data.metrics == result.final_metrics
    assert run.data.params == {"epochs": "3", "scale": "2.0"}
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    assert "request.json" in _artifacts(client, run.info.run_id)  # through the server
    local = client.download_artifacts(run.info.run_id, "request.json", str(tmp_path))
    request = json.loads(Path(local).read_text())
    assert request["Environment"]["MLFLOW_TRACKING_URI"] == mlflow_server


@pytest.mark.slow  # the same server start
def test_sm_toolkit_ui_serves_the_default_store_on_loopback_only(tmp_path):
    """As a user types it, in a folder where local jobs ran: `sm-toolkit ui` (--port only
    because 5000 may be taken on a shared machine)."""
    import signal

    import psutil

    target = tracking.target_for({}, tmp_path / ".sm-toolkit")
    client, experiment = tracking.client_for(target)
    client.create_run(experiment, run_name="job-a")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sm_toolkit.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search"
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        import urllib.request

        body = json.dumps({"experiment_ids": [experiment]}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            runs = json.loads(reply.read())["runs"]
        assert [r["info"]["run_name"] for r in runs] == ["job-a"]
        listening = {
            c.laddr.ip
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
            for c in p.net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "MLflow UI of" in proc.stderr.read()


def test_sm_toolkit_ui_without_a_store_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "ui", "--workdir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--workdir" in proc.stderr and "no " in proc.stderr
