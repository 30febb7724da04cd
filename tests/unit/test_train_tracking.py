"""The trainer's MLflow logging (sm_toolkit/train/tracking.py) against a real SQLite store:
the run it owns when no engine made one (SageMaker's case), the facts it adds to a run the
engine made, and a job without mlflow installed (one warning line, nothing else)."""

from __future__ import annotations

import json
import sys

import pytest

from sm_toolkit.train import tracking

mlflow = pytest.importorskip("mlflow")
HISTORY = [
    {"epoch": 1, "train:loss": 0.9, "val:loss": 1.0},
    {"epoch": 2, "train:loss": 0.5, "val:loss": 0.7},
]


def _folders(tmp_path):
    base, model, out = tmp_path / "opt_ml", tmp_path / "opt_ml/model", tmp_path / "opt_ml/out"
    (base / "input/config").mkdir(parents=True)
    model.mkdir()
    out.mkdir()
    hps = {"epochs": "2", "optimizer": '"adam"', "sagemaker_program": '"train_cnn.py"'}
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps))
    (model / "model.pt").write_bytes(b"weights")
    (model / "model_config.json").write_text("{}")
    (out / "loss_curves.png").write_bytes(b"png")
    (out / "metrics.json").write_text("{}")
    return base, model, out


def test_without_a_run_id_the_trainer_owns_and_fills_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a new experiment in a SQLite store keeps artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path}/store.db"
    environ = {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": "aws",
        "TRAINING_JOB_NAME": "job-on-aws",
    }
    run = tracking.open_run(environ, is_main=True)
    assert run.owned
    run.facts({"model_family": "cnn"})
    run.finish(HISTORY, *_folders(tmp_path))
    client = mlflow.MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("aws").experiment_id])
    assert found.info.run_name == "job-on-aws" and found.info.status == "FINISHED"
    assert found.data.params == {"epochs": "2", "optimizer": "adam"}
    assert found.data.metrics == {"train:loss": 0.5, "val:loss": 0.7}
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "val:loss")]
    assert steps == [1, 2]
    assert found.data.tags["sm-toolkit.model_family"] == "cnn"
    assert found.data.tags["sagemaker.training_job_name"] == "job-on-aws"
    names = {a.path for a in client.list_artifacts(found.info.run_id, "model")}
    names |= {a.path for a in client.list_artifacts(found.info.run_id, "output")}
    assert names == {
        "model/model.pt",
        "model/model_config.json",
        "output/loss_curves.png",
        "output/metrics.json",
    }


def test_with_the_engines_run_id_the_trainer_adds_only_its_facts(tmp_path):
    uri = f"sqlite:///{tmp_path}/store.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("local", artifact_location=str(tmp_path / "a"))
    run_id = client.create_run(experiment, run_name="job").info.run_id
    run = tracking.open_run({"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run_id}, True)
    assert not run.owned
    run.facts({"world_size": 1})
    run.finish(HISTORY, *_folders(tmp_path))
    found = client.get_run(run_id)
    assert found.data.tags["sm-toolkit.world_size"] == "1"
    assert found.data.params == {} and found.data.metrics == {}  # the engine logs those
    assert found.info.status == "RUNNING"  # the engine ends it
    assert len(client.search_runs([experiment])) == 1


def test_not_rank_0_or_no_uri_means_no_run():
    assert tracking.open_run({"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, is_main=False) is None
    assert tracking.open_run({}, is_main=True) is None


def test_without_mlflow_the_trainer_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    run = tracking.open_run({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/x.db"}, True)
    run.facts({"model_family": "cnn"})
    run.finish(HISTORY, *_folders(tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlflow is not installed" in err[0]
    assert not (tmp_path / "x.db").exists()
