"""Sharded checkpoints (FSDP2 / expert parallel) with torch.distributed.checkpoint (DCP).

Layout of one checkpoint, `ckpt-<step>/`:
    .metadata, __<rank>_0.distcp   DCP: model + optimizer, every rank writes its own shards
    trainer.pt                     rank 0: loop position, history, RNG of every rank
                                   (tensors and plain containers, loaded weights_only=True)
    meta.json                      step, model config, train config, world size, degrees

Atomic: every rank writes into `.ckpt-<step>.tmp/`; after a barrier, the local rank 0 of
each host renames it to `ckpt-<step>/` (a directory rename is atomic on POSIX), so a kill
at any moment leaves the previous checkpoint whole; a `.tmp` folder is never read.
No code is unpickled: DCP pickles its `.metadata`; `SafeReader` unpickles it with an
allow-list of DCP's own metadata classes, and tensors load with weights_only=True.
Reshardable: DCP stores global shapes and offsets, so a checkpoint written by 4 ranks
loads on 2 (or 1), whatever the sharding or expert-parallel degree of either run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

_NAME = re.compile(r"^ckpt-(\d{9})$")
_ALLOWED_MODULES = (
    "torch.distributed.checkpoint.metadata",
    "torch.distributed.checkpoint.planner",
    "torch.distributed.checkpoint.filesystem",
    "torch.distributed.checkpoint._nested_dict",
)
_ALLOWED = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # layout by name, also allowed by weights_only
    ("pathlib", "PosixPath"),  # the storage path DCP records
    ("collections", "OrderedDict"),
}
_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata only: any other class (code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (
            module in _ALLOWED_MODULES
            or (module, name) in _ALLOWED
            or (module == "torch" and name in _DTYPES)
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} from a checkpoint")
        return super().find_class(module, name)


class SafeReader(FileSystemReader):
    """FileSystemReader whose metadata load cannot run code."""

    def read_metadata(self, *args: Any, **kwargs: Any):
        path = Path(self.path) / ".metadata"
        metadata = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
        if getattr(metadata, "storage_meta", None) is not None:
            metadata.storage_meta.load_id = self.load_id
        return metadata


class ShardedCheckpoints:
    """Save / find / load DCP checkpoints in one folder, keeping the newest `keep`."""

    def __init__(self, directory: Path, *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:09d}"

    def save(
        self,
        step: int,
        shards: dict[str, Any],
        trainer_state: dict[str, Any] | None,
        meta: dict[str, Any],
        *,
        local_main: bool,
    ) -> Path:
        """Collective: every rank calls it; rank 0 passes `trainer_state`, others None."""
        bad = [k for k, v in shards.items() if not isinstance(v, torch.Tensor)]
        assert not bad, f"only tensors go into DCP (its bytes load by unpickling): {bad}"
        final = self.path_for(step)
        tmp = final.with_name(f".{final.name}.tmp")
        if local_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a kill during an earlier save
            tmp.mkdir(parents=True)
        dist.barrier()
        dcp.save(shards, storage_writer=FileSystemWriter(str(tmp)))
        if trainer_state is not None:
            _write(tmp / "trainer.pt", lambda fh: torch.save(trainer_state, fh))
            _write(tmp / "meta.json", lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
        dist.barrier()
        if local_main:
            if final.exists():  # the same step saved again (SIGTERM right after a save)
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        dist.barrier()
        return final

    def candidates(self) -> list[Path]:
        """Complete checkpoint folders, newest step first."""
        if not self.directory.is_dir():
            return []
        done = [
            p
            for p in self.directory.iterdir()
            if _NAME.match(p.name) and all((p / f).is_file() for f in (".metadata", "meta.json"))
        ]
        return sorted(done, key=lambda p: int(_NAME.match(p.name).group(1)), reverse=True)

    def latest(self) -> Path | None:
        """Newest complete checkpoint as rank 0 sees it, the same on every rank."""
        choice = [None]
        if dist.get_rank() == 0:
            found = self.candidates()
            choice = [str(found[0]) if found else None]
        dist.broadcast_object_list(choice, src=0)
        return Path(choice[0]) if choice[0] else None

    @staticmethod
    def read_meta(path: Path) -> dict[str, Any]:
        return json.loads((path / "meta.json").read_text())

    @staticmethod
    def load(path: Path, shards: dict[str, Any]) -> dict[str, Any]:
        """Fill `shards` (same structure as saved, this run's sharding) in place; return
        rank 0's trainer state, read weights_only."""
        dcp.load(shards, storage_reader=SafeReader(str(path)))
        return torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)

    def _prune(self) -> None:
        for old in self.candidates()[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.directory.glob(".ckpt-*.tmp"):  # left by a kill during a save
            print(f"[checkpoint] removing unfinished {stale.name}", file=sys.stderr)
            shutil.rmtree(stale, ignore_errors=True)


def _write(path: Path, write) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
