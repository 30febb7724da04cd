"""Sharded (DCP) checkpoints of an expert-parallel FSDP2 job under torchrun (gloo).

One scenario, 5 real runs: a 4-process job (EP 2 x FSDP2 4) gets a real SIGTERM, saves a
sharded checkpoint and exits 0; restarted on 4 processes it ends bit for bit where an
uninterrupted 4-process job ends; a copy of the same checkpoint resumes on 2 processes
(resharded: EP 2, FSDP2 2) and ends within 1e-5 of it (measured: 1.2e-7; only the float32
summation order differs); resuming that copy with another model width is refused in one
line (exit 2) naming the checkpoint and the changed fields.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from entrypoint_helpers import ENTRYPOINTS, VENV_BIN, clean_env

TOL = 1e-5
ARGS = ["--size", "debug", "--epochs", "1", "--batch_size", "16", "--corpus_chars", "5000",
        "--dropless", "True", "--aux_loss_weight", "0", "--grad_clip", "1.0", "--threads", "1",
        "--expert_parallel_degree", "2", "--checkpoint_every", "4", "--log_every", "1"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(nproc: int, extra: list[str]) -> list[str]:
    return [str(VENV_BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            str(ENTRYPOINTS / "train_moe.py"), *ARGS, *extra]  # fmt: skip


def _env(base: Path) -> dict[str, str]:
    return clean_env(SAGEMAKER_BASE_DIR=str(base), GLOO_SOCKET_IFNAME="lo")


def _run(tmp_path, base: Path, nproc: int, *extra: str):
    return subprocess.run(
        _command(nproc, list(extra)), cwd=tmp_path, env=_env(base), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _final(base: Path):
    state = torch.load(base / "model" / "model.pt", weights_only=True)
    return state, json.loads((base / "output" / "data" / "metrics.json").read_text())


@pytest.mark.slow
def test_sigterm_resume_bit_for_bit_reshard_four_to_two_and_config_check(tmp_path):
    job = tmp_path / "job"
    (job / "checkpoints").mkdir(parents=True)
    proc = subprocess.Popen(
        _command(4, []), cwd=tmp_path, env=_env(job), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("[train] epoch 1/1 batch 10/"):
            # SIGTERM to one worker is enough: the stop flag is all-reduced every step
            os.kill(_children(proc.pid)[0], signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, rest[-3000:]
    stop = next(line for line in rest.splitlines() if line.startswith("[signal] stopping"))
    assert "ckpt-" in stop and not (job / "model" / "model.pt").exists()
    saved = sorted((job / "checkpoints").glob("ckpt-*"))
    assert saved and all((p / ".metadata").is_file() for p in saved)
    assert len(list(saved[-1].glob("__*_0.distcp"))) == 4  # one shard file per rank

    copy = tmp_path / "copy"
    shutil.copytree(job / "checkpoints", copy / "checkpoints")

    resumed = _run(tmp_path, job, 4)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "[checkpoint] resumed from ckpt-" in resumed.stdout
    reference = _run(tmp_path, tmp_path / "reference", 4)
    assert reference.returncode == 0, reference.stderr[-3000:]
    (state, report), (ref_state, ref_report) = _final(job), _final(tmp_path / "reference")
    assert report["history"] == ref_report["history"]
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)

    wider = _run(tmp_path, copy, 2, "--d_model", "64")
    # every worker exits 2 with the one-line error; torchrun itself reports failure as 1
    assert wider.returncode == 1 and "exitcode  : 2" in wider.stderr, wider.stderr[-3000:]
    lines = [ln for ln in wider.stderr.splitlines() if "d_model 32 -> 64" in ln]
    assert lines and all("ConfigError: checkpoint: " in ln for ln in lines), lines

    two = _run(tmp_path, copy, 2)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "[checkpoint] resumed from ckpt-" in two.stdout
    two_state, two_report = _final(copy)
    assert two_report["world_size"] == 2
    for key in ref_state:
        assert torch.allclose(two_state[key], ref_state[key], atol=TOL), key
    for a, b in zip(two_report["history"], ref_report["history"], strict=True):
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=TOL), name
