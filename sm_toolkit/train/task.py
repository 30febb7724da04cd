"""The `Task` interface (what differs between model families) and the classification task.

The trainer loop is written once; a task supplies the model, this process's batches for an
epoch (deterministic in (seed, epoch) so a resumed run sees the same data order), the loss,
evaluation metrics and the final report/plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.train import metrics as M
from sm_toolkit.train.datasets import Split


class Task(Protocol):
    """What the trainer needs from a model family."""

    family: str
    model: nn.Module

    def batches(self, epoch: int) -> Sequence[Any]:
        """This process's training batches for `epoch`, in order."""

    def start_epoch(self, epoch: int) -> None:
        """Reset per-epoch state (e.g. a carried hidden state)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss and extra scalars to average and report as train:<name>."""

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics on a held-out split, without prefix (the trainer adds `val:` / `test:`)."""

    def final_report(self, model: nn.Module, plot_dir: Path | None) -> dict[str, Any]:
        """Last evaluation, plots; returns entries for metrics.json (and `metrics` to print)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def shard_indices(n: int, *, dist: DistInfo, seed: int, epoch: int, shuffle: bool = True):
    """This rank's sample order for `epoch`: DistributedSampler's rank-strided permutation.

    With one process it is the plain seeded permutation, so the union of all ranks' i-th
    batches equals the single-process i-th batch of the same global size.
    """
    sampler = DistributedSampler(
        range(n),
        num_replicas=dist.world_size,
        rank=dist.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def chunk(indices: list[int], size: int) -> list[torch.Tensor]:
    """Full batches only: a short last batch would weigh its samples more than the others."""
    n = len(indices) // size
    return [torch.tensor(indices[i * size : (i + 1) * size]) for i in range(n)]


def per_rank_batch(global_batch: int, dist: DistInfo) -> int:
    from sm_toolkit.errors import ConfigError

    if global_batch % dist.world_size:
        raise ConfigError(
            "batch_size", global_batch, f"a multiple of the {dist.world_size} processes"
        )
    return global_batch // dist.world_size


class ClassificationTask:
    """Image (or row-sequence) classification on the digits splits."""

    def __init__(
        self,
        *,
        family: str,
        model: nn.Module,
        splits: dict[str, Split],
        num_classes: int,
        batch_size: int,
        seed: int,
        dist: DistInfo,
    ) -> None:
        self.family = family
        self.model = model
        self.splits = splits
        self.num_classes = num_classes
        self.seed = seed
        self.dist = dist
        self.local_batch = per_rank_batch(batch_size, dist)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        n = len(self.splits["train"].y)
        order = shard_indices(n, dist=self.dist, seed=self.seed, epoch=epoch)
        return chunk(order, self.local_batch)

    def start_epoch(self, epoch: int) -> None:
        pass

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        data = self.splits["train"]
        device = next(self.model.parameters()).device
        logits = model(data.x[batch].to(device))
        return F.cross_entropy(logits.float(), data.y[batch].to(device)), {}

    @torch.no_grad()
    def predict(self, model: nn.Module, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """(labels, softmax probabilities, mean loss) over a whole split."""
        model.eval()
        data = self.splits[split]
        device = next(self.model.parameters()).device
        logits = torch.cat([model(x.to(device)).float().cpu() for x in data.x.split(512)])
        model.train()
        loss = F.cross_entropy(logits, data.y).item()
        return data.y.numpy(), logits.softmax(-1).numpy(), loss

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        y, probs, loss = self.predict(model, split)
        return {"loss": loss, **M.classification_metrics(y, probs, num_classes=self.num_classes)}

    def final_report(self, model: nn.Module, plot_dir: Path | None) -> dict[str, Any]:
        from sm_toolkit.train import plots

        y, probs, loss = self.predict(model, "test")
        test = {"loss": loss, **M.classification_metrics(y, probs, num_classes=self.num_classes)}
        cm = M.confusion_matrix(y, probs.argmax(1), num_classes=self.num_classes)
        if plot_dir is not None:
            plots.confusion_matrix_plot(cm, plot_dir / "confusion_matrix.png")
            plots.roc_pr_plot(y, probs, plot_dir / "roc_pr_curves.png")
        return {"metrics": M.prefixed("test", test), "confusion_matrix": cm}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
