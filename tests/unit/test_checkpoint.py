import random

import numpy as np
import torch

from sm_toolkit.train.checkpoint import CheckpointManager, rng_state, set_rng_state


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "step": step,
            "epoch": 0, "position": step, "rng": rng_state()}  # fmt: skip


def test_save_is_atomic_and_latest_valid_wins(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=5)
    for step in (10, 20, 30):
        mgr.save(_state(step))
    assert [p.name for p in mgr.candidates()] == [
        "ckpt-000000030.pt", "ckpt-000000020.pt", "ckpt-000000010.pt",
    ]  # fmt: skip
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind
    path, state = mgr.load_latest()
    assert state["step"] == 30 and torch.equal(state["model"]["w"], torch.full((2,), 30.0))


def test_truncated_and_garbage_files_are_skipped(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=5)
    mgr.save(_state(10))
    good = mgr.save(_state(20))
    data = good.read_bytes()
    mgr.path_for(30).write_bytes(data[: len(data) // 2])  # cut short
    mgr.path_for(40).write_bytes(b"not a checkpoint")
    torch.save({"model": {}}, mgr.path_for(50))  # loads, but missing keys
    path, state = mgr.load_latest()
    assert path == good and state["step"] == 20


def test_old_checkpoints_are_pruned(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for step in range(1, 6):
        mgr.save(_state(step))
    assert len(mgr.candidates()) == 2


def test_rng_states_round_trip_through_weights_only_load(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    _, state = mgr.load_latest()  # torch.load(weights_only=True) inside
    set_rng_state(state["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_temp_files_of_a_killed_writer_are_cleaned_at_the_next_start(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(4))
    dead = [tmp_path / ".ckpt-000000006.pt.tmp-999999", tmp_path / ".ckpt-000000008.pt.tmp-12"]
    for path in dead:
        path.write_bytes(b"half a checkpoint")
    path, loaded = mgr.load_latest()
    assert path.name == "ckpt-000000004.pt" and loaded["step"] == 4
    assert not any(p.exists() for p in dead)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000004.pt"]
