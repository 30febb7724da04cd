"""A small configurable CNN for 8x8 digit images.

    conv stem -> (depth - 1) conv blocks [batch norm] [residual] -> pool -> dropout
    -> flatten -> dense -> activation -> dropout -> output logits

Legend: B batch, C channels, H/W height/width, D dense features, K classes.
Every activation is its own module so hooks (dead-ReLU / saturation checks) see each layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.activations import activation_width_factor, make_activation
from sm_toolkit.models.cpu_matmul import Linear


@dataclass(frozen=True, kw_only=True)
class CNNConfig:
    in_channels: int = 1
    image_size: int = 8
    num_classes: int = 10
    width: int = 32  # conv channels
    depth: int = 2  # conv layers (stem included)
    kernel_size: int = 3
    batch_norm: bool = True
    residual: bool = False
    dense: int = 128
    dropout: float = 0.25
    activation: str = "relu"
    activation_params: dict = field(default_factory=dict)
    pool: str = "max"
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("width", "depth", "dense", "num_classes", "in_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "an integer >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError("kernel_size", self.kernel_size, "an odd integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")
        if self.pool not in ("max", "avg"):
            raise ConfigError("pool", self.pool, "'max' or 'avg'")
        make_activation(self.activation, **self.activation_params)  # validates name + params

    @classmethod
    def debug(cls, **overrides: object) -> CNNConfig:
        """Tiny size that trains in a couple of seconds on a CPU."""
        return cls(**{"width": 8, "depth": 2, "dense": 32, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    """conv -> [batch norm] -> activation, with an optional identity skip around it."""

    def __init__(self, c_in: int, c_out: int, config: CNNConfig, *, residual: bool) -> None:
        super().__init__()
        k = activation_width_factor(config.activation, **config.activation_params)
        self.conv = nn.Conv2d(
            c_in,
            c_out * k,
            config.kernel_size,
            padding=config.kernel_size // 2,
            bias=not config.batch_norm,
        )
        self.norm = nn.BatchNorm2d(c_out * k) if config.batch_norm else nn.Identity()
        self.act = make_activation(config.activation, **config.activation_params)
        self.residual = residual and c_in == c_out

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        y_BCHW = self.act(self.norm(self.conv(x_BCHW)))
        return x_BCHW + y_BCHW if self.residual else y_BCHW


class CNN(nn.Module):
    """Image classifier returning logits (B, K); softmax is applied only at prediction time."""

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        blocks = [ConvBlock(config.in_channels, w, config, residual=False)]
        blocks += [
            ConvBlock(w, w, config, residual=config.residual) for _ in range(config.depth - 1)
        ]
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2) if config.pool == "max" else nn.AvgPool2d(2)
        self.drop1 = nn.Dropout(config.dropout)
        side = config.image_size // 2
        k = activation_width_factor(config.activation, **config.activation_params)
        self.dense = Linear(w * side * side, config.dense * k)
        self.dense_act = make_activation(config.activation, **config.activation_params)
        self.drop2 = nn.Dropout(config.dropout)
        self.head = Linear(config.dense, config.num_classes)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training:
                # Recompute block activations in backward: less memory, ~1 extra forward.
                x_BCHW = checkpoint(block, x_BCHW, use_reentrant=False)
            else:
                x_BCHW = block(x_BCHW)
        x_BD = self.drop1(self.pool(x_BCHW)).flatten(1)
        h_BD = self.drop2(self.dense_act(self.dense(x_BD)))
        return self.head(h_BD)
