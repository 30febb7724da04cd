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

The loop itself is here; the checkpoints are `trainer_checkpoints.CheckpointMixin`, the
metric reduction, reports, progress and stop checks `trainer_reporting.ReportingMixin`,
and the state they share `train_state.TrainState`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.train.checkpoint import (
    CheckpointManager,
)
from sm_toolkit.train.checkpoint_dcp import ShardedCheckpoints
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.monitor import ActivationStats, GradientFlow
from sm_toolkit.train.optim import build_optimizer, build_scheduler, param_groups, weight_penalty
from sm_toolkit.train.parallel import (
    ParallelDims,
    apply_parallelism,
    clip_grad_norm,
    full_state_dict,
)
from sm_toolkit.train.task import Task
from sm_toolkit.train.train_state import FitResult, TrainState
from sm_toolkit.train.trainer_checkpoints import CheckpointMixin
from sm_toolkit.train.trainer_reporting import ReportingMixin

__all__ = ["FitResult", "TrainState", "Trainer"]


class Trainer(CheckpointMixin, ReportingMixin):
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
