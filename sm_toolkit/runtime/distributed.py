"""Data-parallel process group: detect rank/world size, pick a backend, init, reduce.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; mpirun sets
OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK. World size 1 means no process group at all.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sm_toolkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class DistInfo:
    """This process's place in the job. Validated once, here."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"  # "none" | "torchrun" | "mpi"

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError("rank/world_size", (self.rank, self.world_size), "0 <= rank < size")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(environ: Mapping[str, str]) -> DistInfo:
    """Rank and world size from torchrun's or Open MPI's variables (none: single process)."""
    if "WORLD_SIZE" in environ and "RANK" in environ:
        return DistInfo(
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ.get("LOCAL_RANK", 0)),
            launcher="torchrun",
        )
    if "OMPI_COMM_WORLD_SIZE" in environ:
        return DistInfo(
            rank=int(environ["OMPI_COMM_WORLD_RANK"]),
            world_size=int(environ["OMPI_COMM_WORLD_SIZE"]),
            local_rank=int(environ.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)),
            launcher="mpi",
        )
    return DistInfo()


def choose_backend(device: torch.device) -> str:
    """smddp when SageMaker's data-parallel library is installed, else NCCL on GPU, gloo on CPU."""
    torch_backend = "nccl" if device.type == "cuda" else "gloo"
    if importlib.util.find_spec("smdistributed") is not None:
        try:
            import smdistributed.dataparallel.torch.torch_smddp  # noqa: F401  (registers smddp)

            return "smddp"
        except ImportError as err:
            print(
                f"[dist] WARNING: smdistributed present but unusable ({err}); using {torch_backend}"
            )
            return torch_backend
    print(
        f"[dist] WARNING: smdistributed.dataparallel (smddp) is not installed; "
        f"using torch's {torch_backend} backend",
        file=sys.stderr,
    )
    return torch_backend


def init_process_group(info: DistInfo, device: torch.device, environ: Mapping[str, str]) -> str:
    """Init torch.distributed for `info` (no-op for one process). Returns the backend used."""
    if not info.enabled:
        return "none"
    if info.launcher == "mpi":  # mpirun does not set the rendezvous address
        hosts = environ.get("SM_HOSTS", '["127.0.0.1"]').strip('[]"').split('","')
        os.environ.setdefault("MASTER_ADDR", hosts[0] or "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "7777")
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
    backend = choose_backend(device)
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    print(f"[dist] rank {info.rank}/{info.world_size} backend={backend}", file=sys.stderr)
    return backend


def reduce_mean_on(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of `t` over ranks, reduced where `t` lives (identity for one process).

    `t` must be on the training device: a process group made with backend="nccl" has no
    CPU backend, so a CPU tensor here would fail there (tests/unit/test_device_collectives).
    """
    if not info.enabled or not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)  # SUM then divide: gloo has no AVG
    return t / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
