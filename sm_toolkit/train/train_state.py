"""What the training loop carries from step to step (`TrainState`, all of it checkpointed)
and what `Trainer.fit` returns (`FitResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
