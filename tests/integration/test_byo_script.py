"""examples/byo-script: a user's own script, its requirements.txt, a local data folder, its
own metric regexes and a tuning section; checked, rendered and run as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BYO = ROOT / "examples" / "byo-script"
SPEC = BYO / "spec.yaml"
pytestmark = pytest.mark.integration


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", *argv], capture_output=True, text=True, cwd=cwd
    )


def test_byo_spec_validates_and_renders_its_own_metrics_and_upload():
    assert _cli("validate", str(SPEC)).returncode == 0
    proc = _cli("render", str(SPEC))
    assert proc.returncode == 0, proc.stderr
    request = json.loads(proc.stdout)
    definition = request["TrainingJobDefinition"]
    declared = yaml.safe_load(SPEC.read_text())["metrics"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": m["name"], "Regex": m["regex"]} for m in declared
    ]
    assert json.loads(definition["StaticHyperParameters"]["sagemaker_program"]) == "train.py"
    channel = definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == "s3://sm-toolkit-demo/output/byo-logreg-tune/input/train"
    assert f"launch uploads (render --upload writes them): {channel}" in proc.stderr


def test_byo_script_output_gives_one_value_per_metric_per_line(tmp_path):
    """The script's real output, read with the spec's regexes (re.search per line, group 1):
    loss= and val_loss= share a line, and each metric gets its own value."""
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(BYO / "data"), "SM_MODEL_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(BYO / "src" / "train.py"), "--epochs", "3", "--lr", "0.5"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    metrics = yaml.safe_load(SPEC.read_text())["metrics"]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 3
    for line in lines:
        values = {m["name"]: re.search(m["regex"], line).group(1) for m in metrics}
        assert values["loss"] == line.split("loss=")[1].split()[0]
        assert values["val_loss"] == line.split("val_loss=")[1].split()[0]
        assert values["loss"] != values["val_loss"]
    assert (tmp_path / "model.pt").exists()


def test_byo_spec_runs_locally(tmp_path, s3):
    """`sm-toolkit run --local` of the user's script, as typed (defaults), against the moto S3
    of the test session."""
    s3.create_bucket(Bucket="sm-toolkit-demo")
    proc = _cli("run", str(SPEC), "--local", cwd=tmp_path)  # its workdir: tmp_path/.sm-toolkit
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val_acc=" in proc.stdout
