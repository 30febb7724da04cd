"""Spot reclaim: SIGTERM makes the job checkpoint and exit 0; the restarted job resumes from
the checkpoint and ends exactly where an uninterrupted job ends (bit for bit on CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch
from entrypoint_helpers import ENTRYPOINTS, clean_env, run_entrypoint

ARGS = ["--size", "debug", "--epochs", "25", "--checkpoint_every", "10", "--log_every", "1"]


def _final(base):
    state = torch.load(base / "model" / "model.pt", weights_only=True)
    report = json.loads((base / "output" / "data" / "metrics.json").read_text())
    return state, report


@pytest.mark.slow
def test_sigterm_then_restart_equals_an_uninterrupted_run(tmp_path):
    base = tmp_path / "job"
    (base / "checkpoints").mkdir(parents=True)  # as SageMaker does with a CheckpointConfig
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINTS / "train_cnn.py"), *ARGS], cwd=tmp_path,
        env=clean_env(SAGEMAKER_BASE_DIR=str(base)), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("[train] epoch 3/"):
            proc.send_signal(signal.SIGTERM)  # a real signal to the real process
            break
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, rest
    assert "[signal] SIGTERM received" in rest
    stop_line = next(line for line in rest.splitlines() if line.startswith("[signal] stopping"))
    assert "ckpt-" in stop_line
    assert not (base / "model" / "model.pt").exists()  # no final model from a stopped job
    assert list((base / "checkpoints").glob("ckpt-*.pt"))

    resumed = run_entrypoint("train_cnn.py", ARGS, cwd=tmp_path, SAGEMAKER_BASE_DIR=str(base))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[checkpoint] resumed from ckpt-" in resumed.stdout

    ref_base = tmp_path / "reference"
    ref = run_entrypoint("train_cnn.py", ARGS, cwd=tmp_path, SAGEMAKER_BASE_DIR=str(ref_base))
    assert ref.returncode == 0, ref.stderr[-2000:]

    (state, report), (ref_state, ref_report) = _final(base), _final(ref_base)
    assert report["history"] == ref_report["history"]  # every epoch metric, exactly
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
