"""The one training loop for every model family.

    for epoch: for batch in task.batches(epoch)[position:]:
        loss (+ L1/L2) -> backward -> clip -> optimizer + schedule step
        every checkpoint_every steps: atomic checkpoint; on SIGTERM: checkpoint and return
    end of epoch: all-reduced train metrics + validation metrics -> one [metrics] line,
        early stopping

Everything that decides what happens next (step, epoch, position in the epoch's batch list,
RNG states, optimizer/schedule, early-stopping state, metric history, the task's own state
such as a carried RNN hidden state) is in the checkpoint, so a resumed run continues exactly
like an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.runtime.distributed import DistInfo, reduce_mean_on
from sm_toolkit.train.checkpoint import (
    CheckpointManager,
    check_model_config,
    rng_state,
    set_rng_state,
)
from sm_toolkit.train.checkpoint_dcp import ShardedCheckpoints
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.metrics import metrics_line, prefixed
from sm_toolkit.train.monitor import ActivationStats, GradientFlow
from sm_toolkit.train.optim import build_optimizer, build_scheduler, param_groups, weight_penalty
from sm_toolkit.train.parallel import (
    ParallelDims,
    apply_parallelism,
    checkpoint_shards,
    clip_grad_norm,
    full_state_dict,
    restore_shards,
)
from sm_toolkit.train.task import Task


@dataclass
class TrainState:
    """Loop position and history; everything here goes into the checkpoint."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_count: int = 0
    step_losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    non_finite_steps: list[int] = field(default_factory=list)


@dataclass
class FitResult:
    state: TrainState
    interrupted: str | None  # signal name or "max_steps" when the loop returned early
    resumed_from: Path | None
    seconds: float


class Trainer:
    """Runs `task` under `config`. Only rank 0 prints metric lines and writes checkpoints."""

    def __init__(
        self,
        config: TrainConfig,
        task: Task,
        *,
        dist: DistInfo | None = None,
        device: torch.device | None = None,
        checkpoint_dir: Path | None = None,
        tensorboard_dir: Path | None = None,
        watch_activations: bool = False,
        parallel: ParallelDims | None = None,
        model_config: dict[str, Any] | None = None,
        stop: Callable[[], bool] = lambda: False,
        emit: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.task = task
        self.dist = dist or DistInfo()
        self.device = device or torch.device("cpu")
        self.stop = stop
        self.emit = emit if self.dist.is_main else (lambda _line: None)
        self.dims = parallel or ParallelDims(world_size=self.dist.world_size)
        self.model_config = model_config or {}  # recorded in checkpoints, checked on resume
        self.model: nn.Module = task.model.to(self.device)
        sharded = self.dims.enabled and not self.dims.use_ddp
        # Rank 0 keeps an unsharded copy for the final evaluation and model.pt.
        self._plain = copy.deepcopy(self.model) if sharded and self.dist.is_main else None
        self.parallel = apply_parallelism(self.model, self.dims, self.device)
        self.train_model = self._wrap(self.parallel.model)
        self.optimizer = build_optimizer(config, param_groups(self.model, config.weight_decay))
        self._pending: list[tuple[torch.Tensor, dict[str, Any]]] = []  # not yet reduced
        self.steps_per_epoch = len(task.batches(0))
        if self.steps_per_epoch == 0:
            raise ConfigError("batch_size", config.batch_size, "smaller than the training set")
        self.total_steps = config.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(config, self.optimizer, self.total_steps)
        self.checkpoints: CheckpointManager | ShardedCheckpoints | None = None
        if checkpoint_dir:
            kind = ShardedCheckpoints if self.sharded else CheckpointManager
            self.checkpoints = kind(checkpoint_dir)
        self.grads = GradientFlow(self.model)
        self.acts = ActivationStats(self.model) if watch_activations else None
        self.state = TrainState()
        self.writer = self._tensorboard(tensorboard_dir)
        self.bar = None  # tqdm progress bar, only on an interactive terminal

    def _wrap(self, model: nn.Module) -> nn.Module:
        return torch.compile(model) if self.config.compile else model

    def _tensorboard(self, directory: Path | None):
        if directory is None or not self.dist.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(directory))

    @property
    def sharded(self) -> bool:
        return self.dims.enabled and not self.dims.use_ddp

    def gathered_model(self) -> nn.Module | None:
        """The trained model unsharded: on rank 0 (None elsewhere). Every rank must call."""
        if not self.sharded:
            return self.model
        state = full_state_dict(self.parallel)
        if self._plain is None:
            return None
        self._plain.load_state_dict(state)
        return self._plain

    # ----------------------------------------------------------------- checkpoints
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

    # ----------------------------------------------------------------- one step
    def _step(self, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg, s = self.config, self.state
        sample = s.step % cfg.log_every == 0
        if sample and self.acts is not None:
            self.acts.sample(s.step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16), \
                self._offload():  # fmt: skip
            loss, extras = self.task.loss(self.train_model, batch)
        if self.acts is not None:
            self.acts.stop()
        penalty = weight_penalty(self.model, l1=cfg.l1, l2=cfg.l2)
        total = loss + penalty if penalty is not None else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.parallel.reduce_expert_grads()
        if sample:
            self.grads.record(self.model, s.step)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        norm = clip_grad_norm(self.parallel, max_norm)
        value = loss.detach()
        # The one host sync of a step: whether to apply it (every rank agrees: the norm is
        # global and a non-finite loss makes every rank's gradients non-finite).
        if bool(torch.isfinite(value) & torch.isfinite(norm)):
            self.optimizer.step()
        else:  # keep the weights; the exploding_tensor rule reports it
            s.non_finite_steps.append(s.step)
            print(f"[train] WARNING: non-finite loss/gradient at step {s.step}; update skipped")
        self.scheduler.step()
        return value, extras

    def _offload(self):
        """Activation offloading (SMP v2's sm_activation_offloading): tensors saved for
        backward wait in (pinned) CPU memory instead of device memory; torch's own hooks."""
        if not self.config.sm_activation_offloading:
            return contextlib.nullcontext()
        return torch.autograd.graph.save_on_cpu(pin_memory=self.device.type == "cuda")

    def _flush(self) -> None:
        """Reduce the losses and extras of the steps since the last flush and add them to
        the history: one all-reduce of one device tensor, one copy to the host.

        Called at logging steps, before a checkpoint and at the end of an epoch, so every
        rank holds the same history whenever it is read or saved, and the step itself
        never waits for the host (torchtitan reduces metrics the same way).
        """
        if not self._pending:
            return
        s = self.state
        names = ["loss", *sorted(self._pending[0][1])]
        rows = [
            torch.stack([torch.as_tensor(v, device=self.device).reshape(()).to(torch.float64)
                         for v in (value, *(extras[n] for n in names[1:]))])
            for value, extras in self._pending
        ]  # fmt: skip
        table = reduce_mean_on(torch.stack(rows), self.dist).tolist()
        self._pending = []
        for values in table:
            s.step_losses.append(values[0])
            for name, v in zip(names, values, strict=True):
                s.epoch_sums[name] = s.epoch_sums.get(name, 0.0) + v
            s.epoch_count += 1

    def _should_stop(self) -> str | None:
        flag = 1.0 if self.stop() else 0.0
        if self.dist.enabled:  # every rank must leave at the same step or collectives hang
            flag_t = torch.tensor([flag], device=self.device)
            flag = float(reduce_mean_on(flag_t, self.dist)[0])
        if flag > 0:
            return self._stop_name()
        if self.config.max_steps and self.state.step >= self.config.max_steps:
            return "max_steps"
        return None

    def _stop_name(self) -> str:
        return getattr(self.stop, "signal_name", None) or "stop requested"

    # ----------------------------------------------------------------- epochs
    def _end_epoch(self) -> dict[str, float]:
        self._flush()
        s = self.state
        means = {n: total / max(1, s.epoch_count) for n, total in sorted(s.epoch_sums.items())}
        metrics = prefixed("train", means)
        metrics.update(prefixed("val", self.task.evaluate(self.model, "val")))
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        s.epochs.append({"epoch": float(s.epoch + 1), "step": float(s.step), **metrics})
        self._say(metrics_line(metrics, epoch=s.epoch + 1, step=s.step))
        if self.writer is not None:
            for name, v in metrics.items():
                self.writer.add_scalar(name.replace(":", "/"), v, s.step)
            self.writer.flush()
        s.epoch_sums, s.epoch_count = {}, 0
        self._early_stopping(metrics)
        return metrics

    def _early_stopping(self, metrics: dict[str, float]) -> None:
        cfg, s = self.config, self.state
        if not cfg.early_stopping_patience:
            return
        if cfg.early_stopping_metric not in metrics:
            allowed = ", ".join(sorted(metrics))
            raise ConfigError("early_stopping_metric", cfg.early_stopping_metric, allowed)
        value = metrics[cfg.early_stopping_metric]
        sign = 1.0 if cfg.early_stopping_mode == "min" else -1.0
        if s.best is None or sign * (s.best - value) > cfg.early_stopping_min_delta:
            s.best, s.bad_epochs = value, 0
            return
        s.bad_epochs += 1
        if s.bad_epochs >= cfg.early_stopping_patience:
            s.stopped_early = True
            self.emit(
                f"[train] early stopping after epoch {s.epoch + 1}: {cfg.early_stopping_metric} "
                f"did not improve on {s.best:.5f} for {s.bad_epochs} epochs"
            )

    def _progress(self, pos: int, t0: float, done: int) -> None:
        """A tqdm bar on a terminal; plain lines every log_every steps in logs (CloudWatch).

        The loss shown is the all-ranks mean of the last step, reduced here (logging steps).
        """
        s, cfg = self.state, self.config
        log_step = s.step % cfg.log_every == 0 or pos == self.steps_per_epoch
        if log_step:
            self._flush()
        value = s.step_losses[-1] if s.step_losses else float("nan")
        if self.bar is not None:
            self.bar.update(1)
            if s.step % cfg.log_every == 0 or pos == self.steps_per_epoch:
                self.bar.set_postfix(epoch=s.epoch + 1, loss=f"{value:.4f}", refresh=False)
            return
        if s.step % cfg.log_every and pos != self.steps_per_epoch:
            return
        rate = done / max(1e-9, time.perf_counter() - t0)
        lr = self.optimizer.param_groups[0]["lr"]
        self.emit(
            f"[train] epoch {s.epoch + 1}/{cfg.epochs} batch {pos}/{self.steps_per_epoch} "
            f"step {s.step}/{self.total_steps} loss {value:.4f} lr {lr:.2e} {rate:.1f} steps/s"
        )

    # ----------------------------------------------------------------- fit
    def fit(self) -> FitResult:
        """Train until the last epoch, early stop, max_steps or a stop request."""
        t0 = time.perf_counter()
        resumed = self.try_resume()
        s, cfg = self.state, self.config
        done = 0
        if self.dist.is_main and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total_steps, initial=s.step, unit="step", dynamic_ncols=True)
        while s.epoch < cfg.epochs and not s.stopped_early:
            batches = self.task.batches(s.epoch)
            if s.position == 0:
                self.task.start_epoch(s.epoch)
            for pos in range(s.position, len(batches)):
                value, extras = self._step(batches[pos])
                s.step, s.position, done = s.step + 1, pos + 1, done + 1
                self._pending.append((value, extras))
                self._progress(pos + 1, t0, done)
                if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                reason = self._should_stop()
                if reason:
                    return self._interrupt(reason, resumed, t0)
            self._end_epoch()
            s.epoch, s.position = s.epoch + 1, 0
        self.save_checkpoint()
        self._close()
        return FitResult(s, None, resumed, time.perf_counter() - t0)

    def _say(self, line: str) -> None:
        """Emit a line; above the progress bar when there is one (tqdm.write goes to stdout)."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.emit(line)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()

    def _interrupt(self, reason: str, resumed: Path | None, t0: float) -> FitResult:
        path = self.save_checkpoint()
        where = f"checkpoint {path}" if path else "no checkpoint folder, nothing saved"
        self.emit(f"[signal] stopping at step {self.state.step} ({reason}): {where}")
        sys.stdout.flush()
        self._close()
        return FitResult(self.state, reason, resumed, time.perf_counter() - t0)
