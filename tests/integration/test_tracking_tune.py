"""A local tuning job in MLflow: one parent run, each trial's engine run its child, tagged
with AMT's trial status; the best trial named. Through the CLI, real engine, moto S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from sm_toolkit.local import tracking
from sm_toolkit.local.tuning import tracking as tuning_tracking
from sm_toolkit.local.tuning.request import read_tuning_request
from sm_toolkit.local.tuning.trials import TrialRecord

mlflow = pytest.importorskip("mlflow")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"
sys.path.insert(0, str(FIXTURES))
from quadratic_support import job_dict, make_request  # noqa: E402

pytestmark = pytest.mark.integration


def _store_runs(store: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("sm-toolkit")
    return client.search_runs([experiment.experiment_id], max_results=100)


def test_tune_local_from_the_cli_is_a_parent_run_with_one_child_per_trial(bucket, tmp_path):
    # Grid over three optimizers, one of which the script refuses: 2 Completed, 1 Failed.
    ranges = {"optimizer": {"type": "categorical", "values": ["adam", "sgd", "bogus"]}}
    job = job_dict(epochs=2, strategy="Grid", ranges=ranges, max_jobs=3, max_parallel_jobs=1)
    job["output_path"] = f"s3://{bucket}/output"
    spec = tmp_path / "quad.yaml"
    spec.write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "tune", str(spec), "--local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = _store_runs(tmp_path / ".sm-toolkit" / "mlflow" / "mlflow.db")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "quad" and len(runs) == 4 and len(children) == 3
    assert parent.info.status == "FINISHED"
    assert parent.data.params["strategy"] == "Grid"
    by_optimizer = {c.data.params["optimizer"]: c for c in children}
    assert set(by_optimizer) == {"adam", "sgd", "bogus"}
    status = {k: c.data.tags["sm-toolkit.trial_status"] for k, c in by_optimizer.items()}
    assert status == {"adam": "Completed", "sgd": "Completed", "bogus": "Failed"}
    failed = by_optimizer["bogus"]
    assert failed.info.status == "FAILED"
    reason = failed.data.tags["sagemaker.failure_reason"]
    assert reason.startswith("AlgorithmError") and "--optimizer bogus" in reason
    best = by_optimizer["adam"]
    assert parent.data.tags["sm-toolkit.best_trial"] == best.info.run_name
    assert best.data.tags["sm-toolkit.best"] == "true" and "sm-toolkit.best" not in (
        by_optimizer["sgd"].data.tags
    )
    # The objective is the final val:loss: (0-1)^2 + 0.1 (0-2)^2 + 0 (adam) + 2/2 epochs.
    assert best.data.metrics["objective"] == best.data.metrics["val:loss"] == pytest.approx(2.4)
    assert parent.data.metrics["best_objective"] == best.data.metrics["objective"]


def _child(client, experiment_id: str, parent: str, name: str) -> str:
    tags = {"mlflow.parentRunId": parent}
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


@pytest.mark.parametrize(
    "strategy, early, stopped_status",
    [("Hyperband", "Off", "Pruned"), ("Random", "Auto", "Stopped")],
)
def test_trial_statuses_as_amt_names_them(tmp_path, strategy, early, stopped_status):
    """Early-stopped trials: Pruned under Hyperband, Stopped under early stopping Auto."""
    kw = dict(strategy=strategy, early_stopping=early, max_jobs=3, max_parallel_jobs=1)
    if strategy == "Hyperband":
        kw.pop("early_stopping")
    request = make_request(**kw)
    tuning = read_tuning_request(request)
    study = optuna.create_study()
    runs = tuning_tracking.open_tuning_runs(request, tuning, tmp_path, study, resume=False)
    assert study.user_attrs[tuning_tracking.PARENT_ATTR] == runs.run_id
    assert runs.parent.target.uri == tracking.default_uri(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=runs.parent.target.uri)
    experiment = client.get_experiment_by_name("sm-toolkit").experiment_id
    records = [
        TrialRecord(1, "quad-001-a", {}, "Completed", objective=0.5, intermediate=[1, 0.5]),
        TrialRecord(2, "quad-002-b", {}, "Stopped", intermediate=[3.0], early_stopped=True),
        TrialRecord(3, "quad-003-c", {}, "Failed", failure_reason="AlgorithmError: boom"),
        TrialRecord(4, "quad-004-d", {}, "Stopped", intermediate=[2.0]),  # MaxRuntime
    ]
    ids = {r.name: _child(client, experiment, runs.run_id, r.name) for r in records}
    for record in records:
        runs.trial_done(record)
    runs.finish(records[0], "Completed")
    tag = {n: client.get_run(i).data.tags["sm-toolkit.trial_status"] for n, i in ids.items()}
    assert tag == {
        "quad-001-a": "Completed",
        "quad-002-b": stopped_status,
        "quad-003-c": "Failed",
        "quad-004-d": "Stopped",
    }
    failed = client.get_run(ids["quad-003-c"]).data.tags
    assert failed["sagemaker.failure_reason"] == "AlgorithmError: boom"
    parent = client.get_run(runs.run_id)
    assert parent.data.tags["sm-toolkit.best_trial"] == "quad-001-a"
    assert parent.data.metrics["best_objective"] == 0.5 and parent.info.status == "FINISHED"
