"""The spec's ``tracking`` field and the MLflow variables: rendered into the request's
Environment (so a job logs to the same place locally and on SageMaker), and refused in one
line when MLflow could not use them.

Bad inputs tried here, each through the CLI: tracking.uri ftp://host/x, s3://bucket/runs,
postgresql://u@h/db, http:// (no host), sqlite://relative.db, an ARN with a 4-digit account,
an ARN of a training job instead of a tracking server; tracking.experiment "", " padded",
a newline inside, 600 characters; tracking.uri given twice (field and environment); a bad
environment.MLFLOW_TRACKING_URI; a bad MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME in the
user's shell; a request (run --local --request) with a bad Environment MLFLOW_TRACKING_URI
and one with an empty MLFLOW_EXPERIMENT_NAME; --network with the process backend; `ui` with
port 0 and 70000.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli, example, write_spec

from sm_toolkit import contract
from sm_toolkit.local import tracking

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team-server"


def _env(request: dict) -> dict:
    if "TrainingJobDefinition" in request:
        return request["TrainingJobDefinition"].get("Environment", {})
    return request.get("Environment", {})


@pytest.mark.parametrize("name", ["cnn-local", "tune-rnn-grid"])
def test_tracking_renders_into_the_requests_environment(tmp_path, name, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = example(name)
    data["tracking"] = {"uri": ARN, "experiment": "digits"}
    ran = cli("render", str(write_spec(tmp_path, data)))
    assert ran.code == 0, ran.err
    env = _env(json.loads(ran.out))
    assert env["MLFLOW_TRACKING_URI"] == ARN and env["MLFLOW_EXPERIMENT_NAME"] == "digits"


def test_the_users_shell_variables_fill_a_spec_without_tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    ran = cli("render", str(write_spec(tmp_path, example("cnn-local"))))
    assert ran.code == 0, ran.err
    env = _env(json.loads(ran.out))
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert "MLFLOW_EXPERIMENT_NAME" not in env
    # The spec's own setting wins over the shell's.
    data = example("cnn-local")
    data["tracking"] = {"experiment": "mine"}
    env = _env(json.loads(cli("render", str(write_spec(tmp_path, data))).out))
    assert "MLFLOW_TRACKING_URI" not in env and env["MLFLOW_EXPERIMENT_NAME"] == "mine"


def test_without_tracking_the_request_has_no_mlflow_variables(tmp_path, monkeypatch):
    for key in contract.MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)
    env = _env(json.loads(cli("render", str(write_spec(tmp_path, example("cnn-local")))).out))
    assert not set(env) & set(contract.MLFLOW_ENV)


BAD_URIS = [
    "ftp://host/x",
    "s3://bucket/runs",
    "postgresql://u@h/db",
    "http://",
    "sqlite://relative.db",
    "arn:aws:sagemaker:us-east-1:1234:mlflow-tracking-server/x",
    "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
]


@pytest.mark.parametrize("uri", BAD_URIS)
def test_a_bad_tracking_uri_is_one_line(tmp_path, uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = {**example("cnn-local"), "tracking": {"uri": uri}}
    cli("validate", str(write_spec(tmp_path, data))).assert_one_line_refusal(
        "tracking.uri:", "mlflow-tracking-server"
    )


@pytest.mark.parametrize("name", ["", " padded", "a\nb", "x" * 600])
def test_a_bad_experiment_name_is_one_line(tmp_path, name):
    data = {**example("cnn-local"), "tracking": {"experiment": name}}
    cli("validate", str(write_spec(tmp_path, data))).assert_one_line_refusal("tracking.experiment")


def test_tracking_is_given_once_and_environment_values_are_checked_too(tmp_path):
    data = {
        **example("cnn-local"),
        "tracking": {"uri": ARN},
        "environment": {"MLFLOW_TRACKING_URI": ARN},
    }
    cli("validate", str(write_spec(tmp_path, data))).assert_one_line_refusal(
        "environment.MLFLOW_TRACKING_URI", "set it once"
    )
    data = {**example("cnn-local"), "environment": {"MLFLOW_TRACKING_URI": "gs://b/x"}}
    cli("validate", str(write_spec(tmp_path, data))).assert_one_line_refusal(
        "environment.MLFLOW_TRACKING_URI"
    )


@pytest.mark.parametrize(
    "key, value", [("MLFLOW_TRACKING_URI", "gs://bucket/x"), ("MLFLOW_EXPERIMENT_NAME", " x")]
)
def test_a_bad_value_in_the_users_shell_is_named_by_its_variable(tmp_path, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    spec = write_spec(tmp_path, example("cnn-local"))
    cli("validate", str(spec)).assert_one_line_refusal(f"${key}")


@pytest.mark.parametrize(
    "env, field",
    [
        ({"MLFLOW_TRACKING_URI": "gs://bucket/x"}, "Environment.MLFLOW_TRACKING_URI"),
        ({"MLFLOW_EXPERIMENT_NAME": ""}, "Environment.MLFLOW_EXPERIMENT_NAME"),
    ],
)
def test_a_request_with_a_bad_mlflow_variable_is_refused_before_it_runs(tmp_path, env, field):
    request = json.loads((ROOT / "tests/golden/cnn-local.json").read_text())
    request["Environment"] = {**request.get("Environment", {}), **env}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    ran = cli("run", "--local", "--request", str(path), "--workdir", str(tmp_path / "w"))
    ran.assert_one_line_refusal(field)
    assert not (tmp_path / "w" / "jobs").exists() or not any((tmp_path / "w" / "jobs").iterdir())


def test_tracking_targets_default_and_given(tmp_path, monkeypatch):
    default = tracking.target_for({}, tmp_path)
    assert default.uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert default.embedded and default.experiment == "sm-toolkit"
    assert default.artifact_root == str(tmp_path.resolve() / "mlflow" / "artifacts")
    monkeypatch.chdir(tmp_path)
    given = tracking.target_for({"MLFLOW_TRACKING_URI": "runs", "MLFLOW_EXPERIMENT_NAME": "e"}, ".")
    assert given.uri == (tmp_path.resolve() / "runs").as_uri() and given.experiment == "e"
    remote = tracking.target_for({"MLFLOW_TRACKING_URI": ARN}, tmp_path)
    assert remote.uri == ARN and not remote.embedded


def test_hyperparameters_split_into_the_users_params_and_sagemakers_tags():
    hps = {
        "epochs": "12",
        "optimizer": '"adam"',
        "flag": "true",
        "sagemaker_program": '"train_cnn.py"',
        "_tuning_objective_metric": "val:loss",
    }
    params, own = contract.split_hyperparameters(hps)
    assert params == {"epochs": "12", "optimizer": "adam", "flag": "true"}
    assert own == {"sagemaker_program": "train_cnn.py", "_tuning_objective_metric": "val:loss"}


def test_new_embedded_stores_are_mlflows_own_and_each_keeps_its_artifacts(tmp_path):
    """Two work folders in one process: the second store is a copy of an empty one MLflow
    made (its migrations take seconds), with its own artifact folder and no Default
    experiment pointing elsewhere."""
    mlflow = pytest.importorskip("mlflow")
    for name in ("a", "b"):
        target = tracking.target_for({}, tmp_path / name)
        client, experiment = tracking.client_for(target)
        run = client.create_run(experiment, run_name=f"job-{name}")
        (tmp_path / "f.txt").write_text(name)
        client.log_artifact(run.info.run_id, str(tmp_path / "f.txt"))
        found = mlflow.MlflowClient(tracking_uri=target.uri).search_experiments()
        assert [e.name for e in found] == ["sm-toolkit"]  # no Default experiment
        stored = tmp_path / name / "mlflow" / "artifacts"
        assert [p.read_text() for p in stored.rglob("f.txt")] == [name]


def test_network_is_for_the_docker_backend_and_ui_takes_a_real_port(tmp_path):
    request = json.loads((ROOT / "tests/golden/cnn-local.json").read_text())
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    ran = cli("run", "--local", "--request", str(path), "--network", "mine")
    ran.assert_one_line_refusal("--network", "--backend docker")
    for port in ("0", "70000"):
        cli("ui", "--port", port, "--workdir", str(tmp_path)).assert_one_line_refusal("--port")
