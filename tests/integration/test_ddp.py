"""Data parallel with 2 processes (torchrun, gloo) gives the same training as one process
with the same global batch: same batches (DistributedSampler's strided shards of one seeded
permutation), mean gradients all-reduced. Only rank 0 prints metrics and writes files.
The DDP job is stopped after 5 steps and restarted, so resuming under DDP is covered too.

Tolerance: 1e-5 absolute on weights and metrics (measured: 3e-7 and 9e-8); the two runs
differ only in the order float32 gradients are summed (per rank, then averaged)."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest
import torch
from entrypoint_helpers import ENTRYPOINTS, VENV_BIN, clean_env, run_entrypoint

ARGS = ["--size", "debug", "--epochs", "3", "--dropout", "0", "--batch_norm", "False",
        "--batch_size", "64", "--lr", "0.003"]  # fmt: skip
TOL = 1e-5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load(base):
    state = torch.load(base / "model" / "model.pt", weights_only=True)
    return state, json.loads((base / "output" / "data" / "metrics.json").read_text())


def _torchrun(tmp_path, base, *extra: str):
    return subprocess.run(
        [str(VENV_BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(ENTRYPOINTS / "train_cnn.py"), *ARGS, *extra],
        cwd=tmp_path, env=clean_env(SAGEMAKER_BASE_DIR=str(base), GLOO_SOCKET_IFNAME="lo"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_two_process_gloo_stopped_and_resumed_matches_one_process(tmp_path):
    ddp_base = tmp_path / "ddp"
    (ddp_base / "checkpoints").mkdir(parents=True)
    first = _torchrun(tmp_path, ddp_base, "--max_steps", "5", "--checkpoint_every", "3")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert "world size 2" in first.stdout and "backend=gloo" in first.stderr
    assert "[signal] stopping at step 5" in first.stdout
    out = _torchrun(tmp_path, ddp_base)  # the restarted job: both ranks resume
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "[checkpoint] resumed from ckpt-000000005.pt" in out.stdout
    # rank 0 alone prints metric lines: epochs 2 and 3 + the test line
    assert len(re.findall(r"^\[metrics\]", out.stdout, flags=re.M)) == 3

    single_base = tmp_path / "single"
    single = run_entrypoint("train_cnn.py", ARGS, cwd=tmp_path, SAGEMAKER_BASE_DIR=str(single_base))
    assert single.returncode == 0, single.stderr[-2000:]

    (ddp_state, ddp), (one_state, one) = _load(ddp_base), _load(single_base)
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    assert ddp["steps"] == one["steps"] == 3 * 4
    for key in one_state:
        assert torch.allclose(ddp_state[key], one_state[key], atol=TOL), key
    assert len(ddp["history"]) == 3
    for a, b in zip(ddp["history"], one["history"], strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=TOL), name
