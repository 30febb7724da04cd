"""`TrainConfig`: every knob of the shared training loop, validated when it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sm_toolkit.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "constant")
MODES = ("min", "max")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation, schedule, regularisation, early stopping and runtime switches.

    batch_size is the GLOBAL batch: with N data-parallel processes each takes batch_size / N,
    so a run gives the same updates whatever the number of processes.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"
    momentum: float = 0.9  # SGD momentum, RMSProp momentum
    weight_decay: float = 0.0  # decoupled (AdamW) or coupled (others), torch's meaning
    l1: float = 0.0  # explicit L1 penalty on weight matrices, added to the loss
    l2: float = 0.0  # explicit L2 penalty on weight matrices, added to the loss
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    early_stopping_patience: int = 0  # epochs without improvement; 0 = off
    early_stopping_metric: str = "val:loss"
    early_stopping_mode: str = "min"
    early_stopping_min_delta: float = 0.0
    bf16: bool = False
    compile: bool = False
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0 = only at the end and on SIGTERM
    log_every: int = 20
    max_steps: int = 0  # stop after this many steps (0 = run all epochs); schedule ignores it
    sm_activation_offloading: bool = False  # saved activations kept in CPU memory (SMP v2 name)
    activation_loading_horizon: int = 2  # SMP v2 name; accepted and checked, see hparams

    def __post_init__(self) -> None:
        self._check_positive("epochs", self.epochs)
        self._check_positive("batch_size", self.batch_size)
        self._check_positive("lr", self.lr)
        self._check_positive("log_every", self.log_every)
        self._check_positive("activation_loading_horizon", self.activation_loading_horizon)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if self.early_stopping_mode not in MODES:
            raise ConfigError("early_stopping_mode", self.early_stopping_mode, "'min' or 'max'")
        for name in ("momentum", "weight_decay", "l1", "l2", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "a number >= 0")
        for name in ("warmup_steps", "early_stopping_patience", "checkpoint_every", "max_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "an integer >= 0")
        if self.early_stopping_min_delta < 0:
            raise ConfigError("early_stopping_min_delta", self.early_stopping_min_delta, ">= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")

    @staticmethod
    def _check_positive(name: str, value: float) -> None:
        if not value > 0:
            raise ConfigError(name, value, "a number > 0")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
