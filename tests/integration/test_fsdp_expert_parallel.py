"""FSDP2 and expert parallelism under plain torchrun (gloo, 2 and 4 processes) train like
one process with the same global batch.

Tolerance 1e-5 absolute on every weight of model.pt and on every epoch metric (measured
here: 5e-8 for the CNN under FSDP2, 1.2e-7 for the MoE LM under EP 2 x FSDP2 4). The runs
differ only in float32 summation order (gradients are summed per rank, then reduced).
Settings that are *not* per-token and so would legitimately differ are switched off:
batch norm (statistics of the local batch) and the MoE balance loss (a product of two
batch means, computed on each rank's tokens); the z-loss and dropless routing are
per-token and stay on. The user-error cases run the entrypoint as a user types it.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
import torch
from entrypoint_helpers import ENTRYPOINTS, VENV_BIN, clean_env, run_entrypoint

TOL = 1e-5
CNN = ["--size", "debug", "--epochs", "1", "--batch_size", "32", "--dropout", "0",
       "--batch_norm", "False", "--threads", "1"]  # fmt: skip
MOE = ["--size", "debug", "--epochs", "1", "--batch_size", "16", "--corpus_chars", "8000",
       "--dropless", "True", "--aux_loss_weight", "0", "--grad_clip", "1.0",
       "--threads", "1"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(tmp_path, base, program: str, nproc: int, args: list[str]):
    return subprocess.run(
        [str(VENV_BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", str(nproc),
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(ENTRYPOINTS / program), *args],
        cwd=tmp_path, env=clean_env(SAGEMAKER_BASE_DIR=str(base), GLOO_SOCKET_IFNAME="lo"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def load(base):
    state = torch.load(base / "model" / "model.pt", weights_only=True)
    return state, json.loads((base / "output" / "data" / "metrics.json").read_text())


def assert_same_training(base_a, base_b) -> None:
    (state_a, report_a), (state_b, report_b) = load(base_a), load(base_b)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.allclose(state_a[key].float(), state_b[key].float(), atol=TOL), key
    assert report_a["steps"] == report_b["steps"] > 0
    for a, b in zip(report_a["history"], report_b["history"], strict=True):
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=TOL), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("program", "args", "nproc", "degrees", "mode"),
    [
        ("train_cnn.py", CNN, 2, ["--hybrid_shard_degree", "2"], "fsdp2 shard 2 x replicate 1"),
        ("train_moe.py", MOE, 4, ["--expert_parallel_degree", "2"], "expert parallel 2"),
        ("train_moe.py", MOE, 4, ["--hybrid_shard_degree", "2"], "fsdp2 shard 2 x replicate 2"),
    ],
    ids=["cnn-fsdp2-2proc", "moe-ep2-x-dp2-4proc", "moe-hsdp-2x2-4proc"],
)
def test_sharded_training_matches_one_process(tmp_path, program, args, nproc, degrees, mode):
    many = torchrun(tmp_path, tmp_path / "many", program, nproc, [*args, *degrees])
    assert many.returncode == 0, (many.stdout + many.stderr)[-3000:]
    assert mode in many.stdout and "backend=gloo" in many.stderr
    one = run_entrypoint(program, args, cwd=tmp_path, SAGEMAKER_BASE_DIR=str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    assert_same_training(tmp_path / "many", tmp_path / "one")
    assert load(tmp_path / "many")[1]["world_size"] == nproc


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tensor_parallel_degree", "2"], "tensor_parallel_degree: 2 is not allowed; 1"),
        (["--expert_parallel_degree", "3"], "expert_parallel_degree: 3 is not allowed"),
        (["--activation_loading_horizon", "0"], "activation_loading_horizon: 0"),
    ],
)
def test_bad_parallel_hyperparameter_is_one_line_exit_2(tmp_path, args, needle):
    out = run_entrypoint("train_moe.py", ["--size", "debug", *args], cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
