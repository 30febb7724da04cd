"""render and validate as a user types them: the bare request on stdout, notes and uploads
on stderr, the user's SageMaker SDK config applied as launch applies it, no log noise."""

from __future__ import annotations

import json

import pytest
from cli_helpers import ROOT, cli, cli_subprocess

EXAMPLES = ROOT / "examples"


def test_render_prints_the_bare_request_and_lists_uploads_on_stderr():
    outcome = cli("render", str(EXAMPLES / "cnn-spot.yaml"))
    assert outcome.code == 0, outcome.err
    request = json.loads(outcome.out)
    assert request["TrainingJobName"] == "cnn-digits-spot"
    assert "Operation" not in request and "Uploads" not in request
    code = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert f"launch uploads (render --upload writes them): {code}" in outcome.err


def test_user_sdk_config_defaults_apply_to_render(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
        "  TrainingJob:\n"
        "    EnableNetworkIsolation: true\n"
        "    Tags:\n      - {Key: team, Value: vision}\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    request = json.loads(cli("render", str(EXAMPLES / "cnn-local.yaml")).out)
    assert request["EnableNetworkIsolation"] is True
    assert {"Key": "team", "Value": "vision"} in request["Tags"]


def test_validate_says_in_one_line_that_rules_need_the_debugger_hook():
    outcome = cli("validate", str(EXAMPLES / "moe-smddp.yaml"))
    assert outcome.code == 0, outcome.err
    notes = [line for line in outcome.err.splitlines() if "Debugger rules" in line]
    assert len(notes) == 1 and "smdebug hook" in notes[0] and len(notes[0]) <= 300
    quiet = cli("validate", str(EXAMPLES / "cnn-local.yaml"))
    assert "Debugger" not in quiet.err


@pytest.mark.parametrize("example", ["tune-rnn-grid"])
def test_render_is_quiet_by_default_and_verbose_on_request(example):
    """No SDK or botocore INFO lines, no "No finished training job" warning, unless --verbose."""
    quiet = cli_subprocess("render", str(EXAMPLES / f"{example}.yaml"))
    assert quiet.code == 0, quiet.err
    assert all(line.startswith("sm-toolkit: ") for line in quiet.err.splitlines()), quiet.err
    loud = cli_subprocess("--verbose", "render", str(EXAMPLES / f"{example}.yaml"))
    assert any(not line.startswith("sm-toolkit: ") for line in loud.err.splitlines())
