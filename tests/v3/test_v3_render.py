"""render under SDK v3: ModelTrainer's own request, offline, validated by botocore, kept
as golden files in tests/golden/v3 (a refusal line for what v3 cannot express).

v3 names a training job ``<name>-<timestamp>`` and its tuner stages code under
``tuning-<unix time>``; the golden files hold those as ``<timestamp>`` / ``<unix-time>``.
Regenerate after an intended change with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

from sm_toolkit.aws.render import render  # noqa: E402
from sm_toolkit.errors import ConfigError  # noqa: E402
from sm_toolkit.spec import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden" / "v3"
REFUSED = {  # example -> the field v3 cannot express
    "cnn-spot": "rules",
    "moe-smddp": "distribution.type",
    "rnn-pytorchddp": "distribution.type",
}
DRIVERS = "/opt/ml/input/data/sm_drivers/sm_train.sh"


def _stable(document: dict) -> dict:
    text = json.dumps(document, sort_keys=True)
    text = re.sub(r"-\d{14}(?=[/\"])", "-<timestamp>", text)
    text = re.sub(r"/tuning-\d{10}/", "/tuning-<unix-time>/", text)
    return json.loads(text)


def _document(path: Path) -> dict:
    try:
        rendered = render(load_spec(path), sdk="v3")
    except ConfigError as exc:
        return {"Refusal": str(exc)}
    return _stable(
        {"Operation": rendered.operation, "Request": rendered.request, "Uploads": rendered.uploads}
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_matches_its_v3_golden(path):
    document = _document(path)
    golden = GOLDEN / f"{path.stem}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"no golden file for {path.name}: run with UPDATE_GOLDEN=1"
    assert json.loads(golden.read_text()) == document
    if path.stem in REFUSED:
        assert document["Refusal"].startswith(f"{REFUSED[path.stem]}: ")
        assert "--sdk v2" in document["Refusal"]
    else:
        assert "Refusal" not in document


def _channels(definition: dict) -> dict[str, str]:
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in definition["InputDataConfig"]
    }


def test_training_request_runs_sm_train_sh_from_the_sm_drivers_channel():
    rendered = render(load_spec(ROOT / "examples" / "cnn-torchrun.yaml"), sdk="v3")
    req = rendered.request
    spec = req["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"] == ["/bin/bash"]
    assert spec["ContainerArguments"] == ["-c", f"chmod +x {DRIVERS} && {DRIVERS}"]
    assert set(_channels(req)) == {"train", "code", "sm_drivers"}
    assert not any(k.startswith("sagemaker_") for k in req["HyperParameters"])
    assert re.fullmatch(r"cnn-digits-torchrun-\d{14}", req["TrainingJobName"])
    # what render reports as uploaded: v3's two channels, nothing else
    assert rendered.uploads == [
        _channels(req)["code"] + "/",
        _channels(req)["sm_drivers"] + "/",
    ]


def test_tuning_request_falls_back_to_v2_style_static_hyperparameters():
    req = render(load_spec(ROOT / "examples" / "tune-cnn-hyperband.yaml"), sdk="v3").request
    definition = req["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert static["sagemaker_program"] == "train_cnn.py"
    assert static["sagemaker_submit_directory"].endswith("/sourcedir/sourcedir.tar.gz")
    assert "lr" not in static and static["epochs"] == "9"
    assert "ContainerEntrypoint" not in definition["AlgorithmSpecification"]
    assert set(_channels(definition)) == {"train", "sm_drivers"}
    config = req["HyperParameterTuningJobConfig"]
    assert config["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MaxResource": 9, "MinResource": 1}
    }
    assert req["HyperParameterTuningJobName"] == "cnn-hb-001"


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sm_toolkit.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_render_defaults_to_the_installed_v3():
    done = _cli("render", str(ROOT / "examples" / "cnn-local.yaml"))
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)  # the bare request: what --cli-input-json takes
    assert re.fullmatch(r"cnn-digits-local-\d{14}", request["TrainingJobName"])  # v3 names it
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]


@pytest.mark.parametrize("command", ["validate", "render"])
def test_cli_refuses_smddp_under_v3_in_one_line(command):
    done = _cli(command, str(ROOT / "examples" / "moe-smddp.yaml"), "--sdk", "v3")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sm-toolkit: error: distribution.type: 'smddp' is not allowed;")
    assert "torch_distributed" in lines[0]


def test_cli_asking_for_v2_in_a_v3_venv_is_one_line():
    done = _cli("render", str(ROOT / "examples" / "cnn-local.yaml"), "--sdk", "v2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sm-toolkit: error: --sdk: 'v2' is not allowed; the generation installed here (v3); "
        "v2 and v3 cannot share an environment, so use a virtualenv with sm-toolkit[sdk-v2]"
    ]


def test_cli_validate_names_the_generation():
    done = _cli("validate", str(ROOT / "examples" / "tune-rnn-grid.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("(tuning job rnn-grid-001, SDK v3)")


def test_render_opens_no_connection_and_needs_no_credentials(monkeypatch):
    import socket
    import threading

    attempts: list[object] = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("render must stay offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    rendered = render(load_spec(ROOT / "examples" / "tune-moe-bayesian-warmstart.yaml"), sdk="v3")
    assert rendered.operation == "CreateHyperParameterTuningJob"
    assert attempts == []
    assert not [t for t in threading.enumerate() if t.name == "sagemaker-telemetry"]


@pytest.mark.parametrize("name", ["cnn-torchrun", "tune-cnn-hyperband"])
def test_tracking_renders_into_the_v3_requests_environment(name, tmp_path):
    """The same MLflow target under v3 as under v2 (ModelTrainer's environment)."""
    import yaml

    from sm_toolkit.spec import parse_spec

    data = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
    data["tracking"] = {"uri": arn, "experiment": "digits"}
    req = render(parse_spec(data, base_dir=ROOT / "examples"), sdk="v3").request
    env = req.get("TrainingJobDefinition", req)["Environment"]
    assert env["MLFLOW_TRACKING_URI"] == arn and env["MLFLOW_EXPERIMENT_NAME"] == "digits"
