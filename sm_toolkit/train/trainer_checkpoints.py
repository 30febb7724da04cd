"""The trainer's checkpoints: what a resume needs, written and read back.

A mixin of `Trainer` (`sm_toolkit.train.trainer`), split out by concern; it uses the
trainer's model, optimizer, scheduler, state, task, parallel dims and checkpoint manager.
Plain checkpoints (one file, rank 0) under DDP or one process; sharded DCP checkpoints
(every rank) under FSDP2 / expert parallelism. Both record the model config, checked on
resume, and every rank's RNG states, so dropout resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sm_toolkit.train.checkpoint import check_model_config, rng_state, set_rng_state
from sm_toolkit.train.parallel import checkpoint_shards, restore_shards
from sm_toolkit.train.train_state import TrainState


class CheckpointMixin:
    """Checkpoint save and resume for `Trainer`."""

    def checkpoint_state(self, *, weights: bool = True) -> dict[str, Any]:
        """Everything a resume needs; `weights=False` leaves out model and optimizer (a
        sharded checkpoint stores them through DCP)."""
        s = self.state
        model = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {
            **(model if weights else {}),
            "model_config": dict(self.model_config),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": s.step,
            "epoch": s.epoch,
            "position": s.position,
            "epoch_sums": dict(s.epoch_sums),
            "epoch_count": s.epoch_count,
            "step_losses": list(s.step_losses),
            "epochs": [dict(e) for e in s.epochs],
            "early": {"best": s.best, "bad": s.bad_epochs, "stopped": s.stopped_early},
            "non_finite_steps": list(s.non_finite_steps),
            "task": self.task.state_dict(),
            "grads": self.grads.state_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes; every rank must call it (the RNG states of all ranks are gathered)."""
        self._flush()
        if self.checkpoints is None:
            return None
        rng_per_rank = self._gather_rng()
        if self.sharded:
            return self._save_sharded(rng_per_rank)
        if not self.dist.is_main:
            return None
        return self.checkpoints.save({**self.checkpoint_state(), "rng_per_rank": rng_per_rank})

    def _save_sharded(self, rng_per_rank: list) -> Path:
        flat, groups = checkpoint_shards(self.parallel, self.optimizer)
        state = None
        if self.dist.is_main:
            state = {
                **self.checkpoint_state(weights=False),
                "rng_per_rank": rng_per_rank, "optimizer_groups": groups,
            }  # fmt: skip
        meta = {
            "step": self.state.step, "model_config": self.model_config,
            "train_config": self.config.to_dict(), "world_size": self.dist.world_size,
            "parallelism": self.dims.describe(),
        }  # fmt: skip
        return self.checkpoints.save(
            self.state.step, flat, state, meta, local_main=self.dist.local_rank == 0
        )

    def _gather_rng(self) -> list:
        """Each rank's RNG states, so dropout on every rank resumes where it stopped."""
        if not self.dist.enabled:
            return [rng_state()]
        import torch.distributed as dist

        states: list = [None] * self.dist.world_size
        dist.all_gather_object(states, rng_state())
        return states

    def try_resume(self) -> Path | None:
        """Load the latest valid checkpoint, if any. Returns its path."""
        if self.checkpoints is None:
            return None
        found = self._load_sharded() if self.sharded else self.checkpoints.load_latest()
        if found is None:
            return None
        path, ck = found
        if not self.sharded:
            check_model_config(ck.get("model_config"), self.model_config, path)
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        per_rank = ck.get("rng_per_rank") or []
        same_world = len(per_rank) == self.dist.world_size
        set_rng_state(per_rank[self.dist.rank] if same_world else ck["rng"])
        early = ck["early"]
        self.state = TrainState(
            step=ck["step"], epoch=ck["epoch"], position=ck["position"],
            epoch_sums=dict(ck["epoch_sums"]), epoch_count=ck["epoch_count"],
            step_losses=list(ck["step_losses"]), epochs=[dict(e) for e in ck["epochs"]],
            best=early["best"], bad_epochs=early["bad"], stopped_early=early["stopped"],
            non_finite_steps=list(ck["non_finite_steps"]),
        )  # fmt: skip
        self.task.load_state_dict(ck["task"])
        self.grads.load_state_dict(ck["grads"])
        self.emit(
            f"[checkpoint] resumed from {path.name}: step {self.state.step}, "
            f"epoch {self.state.epoch + 1}, batch {self.state.position}/{self.steps_per_epoch}"
        )
        return path

    def _load_sharded(self) -> tuple[Path, dict[str, Any]] | None:
        path = self.checkpoints.latest()
        if path is None:
            return None
        check_model_config(
            self.checkpoints.read_meta(path)["model_config"], self.model_config, path
        )
        flat, _ = checkpoint_shards(self.parallel, self.optimizer)  # this run's sharding
        ck = self.checkpoints.load(path, flat)
        restore_shards(self.parallel, self.optimizer, flat, ck["optimizer_groups"])
        return path, ck
