"""The trainer's reporting and stopping: step metrics reduced at logging steps, the
epoch's [metrics] line, TensorBoard, the progress bar or log lines, early stopping, and
the stop checks every rank agrees on.

A mixin of `Trainer` (`sm_toolkit.train.trainer`), split out by concern; it uses the
trainer's state, config, task, optimizer, dist info, writer and progress bar.
"""

from __future__ import annotations

import time

import torch

from sm_toolkit.errors import ConfigError
from sm_toolkit.runtime.distributed import reduce_mean_on
from sm_toolkit.train.metrics import metrics_line, prefixed


class ReportingMixin:
    """Metric reduction, epoch reports, progress and stop decisions for `Trainer`."""

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

    def _say(self, line: str) -> None:
        """Emit a line; above the progress bar when there is one (tqdm.write goes to stdout)."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.emit(line)
