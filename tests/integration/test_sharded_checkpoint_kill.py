"""A real SIGKILL in the middle of a sharded save leaves the previous checkpoint loadable.

A child process (a one-rank gloo group) saves checkpoint 5, then starts saving a large
checkpoint 7 in a loop; the test kills it with SIGKILL as soon as the `.tmp` folder of 7
appears, then loads what is on disk."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.distributed as dist

from sm_toolkit.train.checkpoint_dcp import ShardedCheckpoints

CHILD = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from sm_toolkit.train.checkpoint_dcp import ShardedCheckpoints
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    ck = ShardedCheckpoints(sys.argv[1])
    ck.save(5, {"w": torch.full((4,), 5.0)}, {"step": 5}, {"model_config": {}}, local_main=True)
    print("saved 5", flush=True)
    big = {f"w{i}": torch.randn(1 << 20) for i in range(64)}  # 256 MiB: takes a while
    while True:
        ck.save(7, big, {"step": 7}, {"model_config": {}}, local_main=True)
    """
)


@pytest.mark.slow
def test_kill_during_save_leaves_the_previous_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "saved 5"
    tmp = tmp_path / ".ckpt-000000007.tmp"
    deadline = time.monotonic() + 60
    while not any(tmp.glob("*.distcp")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # mid-save: shard files being written, not renamed
    proc.wait(timeout=30)
    assert tmp.is_dir(), "the kill came too late to test anything"
    found = ShardedCheckpoints(tmp_path).candidates()
    assert [p.name for p in found] in (["ckpt-000000005"], ["ckpt-000000007", "ckpt-000000005"])
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        shards = {"w": torch.zeros(4)}
        state = ShardedCheckpoints(tmp_path).load(tmp_path / "ckpt-000000005", shards)
    finally:
        dist.destroy_process_group()
    assert state == {"step": 5} and torch.equal(shards["w"], torch.full((4,), 5.0))
