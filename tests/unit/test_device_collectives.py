"""Collectives on the training path: on the training device, and only where needed.

A process group made with backend="nccl" has no CPU backend, so one CPU tensor in a
collective fails a GPU job at its first step (the old trainer all-reduced a CPU float64
tensor every step). Two fakes registered with `Backend.register_backend`, no mocks:
- `devonly`, registered for devices=["cuda"] only, shows that such a group rejects a CPU
  tensor here on the CPU, the way NCCL would, and that `reduce_mean_on` with a CPU
  tensor would hit it;
- `recording`, a Python ProcessGroup for the trainer's own device, records every
  collective of a real training run (2 ranks claimed; the fake completes each call with
  the local value): every tensor is on the trainer's device, and the losses are reduced
  only at logging steps, one call per logging step (the stop flag is reduced each step).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from trainer_helpers import digits_task

from sm_toolkit.runtime.distributed import DistInfo, reduce_mean_on
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.parallel import ParallelDims
from sm_toolkit.train.trainer import Trainer


class DoneWork(dist._Work):
    """A collective that has already completed."""

    def __init__(self, value) -> None:
        super().__init__()
        self.value = value

    def wait(self, timeout=None) -> bool:
        return True

    def get_future(self):
        fut = torch.futures.Future()
        fut.set_result(self.value)
        return fut


class RecordingGroup(dist.ProcessGroup):
    """Completes every all-reduce at once with the local value; remembers what it saw."""

    calls: list[tuple[str, torch.device, tuple]] = []

    def __init__(self, rank: int, world_size: int) -> None:
        super().__init__(rank, world_size)

    def _done(self, value):
        return DoneWork(value)

    def allreduce(self, tensor_list, opts=None):
        for t in tensor_list:
            RecordingGroup.calls.append(("allreduce", t.device, tuple(t.shape)))
        return self._done(tensor_list)

    def barrier(self, opts=None):
        return self._done([])

    def getBackendName(self) -> str:
        return "recording"


def _init(backend: str, devices: list[str], creator) -> None:
    if backend not in dist.Backend.backend_list:
        dist.Backend.register_backend(backend, creator, devices=devices)
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=2)


@pytest.fixture
def devonly():
    from torch._C._distributed_c10d import FakeProcessGroup

    def creator(store, rank, world_size, timeout):
        return FakeProcessGroup._create_internal(rank, world_size)

    _init("devonly", ["cuda"], creator)
    yield
    dist.destroy_process_group()


@pytest.fixture
def recording():
    RecordingGroup.calls = []
    _init("recording", ["cpu"], lambda store, rank, size, timeout: RecordingGroup(rank, size))
    yield RecordingGroup.calls
    dist.destroy_process_group()


def test_a_device_only_group_refuses_cpu_tensors_like_nccl(devonly):
    assert dist.Backend.backend_capability["devonly"] == ["cuda"]
    with pytest.raises(RuntimeError, match="cpu"):
        dist.all_reduce(torch.zeros(2))
    with pytest.raises(RuntimeError, match="cpu"):  # the reduction helper does not hide it
        reduce_mean_on(torch.zeros(2), DistInfo(rank=0, world_size=2))


def test_training_collectives_are_on_the_device_and_losses_reduced_at_log_steps(recording):
    info = DistInfo(rank=0, world_size=2)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, log_every=3, max_steps=7)
    # ParallelDims of one process: no DDP wrapper, so only the trainer's own reductions run
    trainer = Trainer(
        config, digits_task(dist=info, batch_size=16), dist=info,
        parallel=ParallelDims(world_size=1), emit=lambda _line: None,
    )  # fmt: skip
    assert trainer.steps_per_epoch > 7  # the epoch end would add one more flush
    result = trainer.fit()
    assert result.interrupted == "max_steps" and result.state.step == 7
    assert len(result.state.step_losses) == 7  # every step's loss is in the history
    assert recording and all(device == trainer.device for _, device, _ in recording)
    stop_flags = [c for c in recording if c[2] == (1,)]
    loss_tables = [c for c in recording if len(c[2]) == 2]
    assert len(stop_flags) == 7  # one tiny flag per step: every rank must stop together
    # steps 3 and 6 (log_every) and the flush before the final checkpoint: 3 + 3 + 1 rows
    assert [shape[0] for _, _, shape in loss_tables] == [3, 3, 1]
    assert len(recording) == len(stop_flags) + len(loss_tables)
