"""Recurrent models on torch's nn.RNN / nn.LSTM / nn.GRU.

CharRNN: character language model, trained with truncated BPTT; the hidden state is
    passed in and returned so the trainer can carry it across windows (detached).
RowClassifier: reads an 8x8 digit image row by row (8 steps of 8 features) and classifies
    it from the final hidden state; may be bidirectional.

Legend: B batch, T time steps, V vocabulary, E embedding, H hidden, F input features,
L layers, K classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.cpu_matmul import Linear

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class RNNConfig:
    cell: str = "lstm"
    task: str = "lm"  # "lm" (character language model) | "classify" (digits by rows)
    vocab_size: int = 0  # lm only
    embed: int = 64
    input_size: int = 8  # classify only: features per time step
    num_classes: int = 10
    hidden: int = 256
    layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.1
    nonlinearity: str = "tanh"  # vanilla RNN only
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError("cell", self.cell, f"one of {', '.join(CELLS)}")
        if self.task not in ("lm", "classify"):
            raise ConfigError("task", self.task, "'lm' or 'classify'")
        if self.task == "lm" and self.bidirectional:
            # A bidirectional LM would see the characters it must predict.
            raise ConfigError("bidirectional", True, "only with task=classify")
        if self.task == "lm" and self.vocab_size < 2:
            raise ConfigError("vocab_size", self.vocab_size, "an integer >= 2 for task=lm")
        for name in ("hidden", "layers", "embed"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError("nonlinearity", self.nonlinearity, "'tanh' or 'relu'")

    @classmethod
    def debug(cls, **overrides: object) -> RNNConfig:
        return cls(**{"embed": 16, "hidden": 32, "layers": 1, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def _make_rnn(config: RNNConfig, input_size: int) -> nn.RNNBase:
    kwargs = dict(
        input_size=input_size,
        hidden_size=config.hidden,
        num_layers=config.layers,
        batch_first=True,
        dropout=config.dropout if config.layers > 1 else 0.0,
        bidirectional=config.bidirectional,
    )
    if config.cell == "rnn":
        kwargs["nonlinearity"] = config.nonlinearity
    return CELLS[config.cell](**kwargs)


def _run(rnn: nn.RNNBase, x: torch.Tensor, h: Hidden | None, use_ckpt: bool):
    if use_ckpt:
        return checkpoint(rnn, x, h, use_reentrant=False)
    return rnn(x, h)


class CharRNN(nn.Module):
    """idx (B, T) + hidden -> logits (B, T, V) + new hidden."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.rnn = _make_rnn(config, config.embed)
        self.drop = nn.Dropout(config.dropout)
        self.head = Linear(config.hidden, config.vocab_size)

    def forward(
        self, idx_BT: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        x_BTE = self.drop(self.embed(idx_BT))
        use_ckpt = self.config.activation_checkpointing and self.training
        out_BTH, hidden = _run(self.rnn, x_BTE, hidden, use_ckpt)
        return self.head(self.drop(out_BTH)), hidden


class RowClassifier(nn.Module):
    """image (B, 1, 8, 8) -> rows as a sequence (B, 8, 8) -> logits (B, K)."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = _make_rnn(config, config.input_size)
        dirs = 2 if config.bidirectional else 1
        self.drop = nn.Dropout(config.dropout)
        self.head = Linear(config.hidden * dirs, config.num_classes)

    def forward(self, x_B1HW: torch.Tensor) -> torch.Tensor:
        x_BTF = x_B1HW.flatten(1, 2) if x_B1HW.dim() == 4 else x_B1HW
        use_ckpt = self.config.activation_checkpointing and self.training
        _, hidden = _run(self.rnn, x_BTF, None, use_ckpt)
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # (L*dirs, B, H)
        dirs = 2 if self.config.bidirectional else 1
        last_BH = torch.cat([h_n[-d] for d in range(dirs, 0, -1)], dim=-1)  # fwd, then bwd
        return self.head(self.drop(last_BH))


def build_rnn(config: RNNConfig) -> nn.Module:
    return CharRNN(config) if config.task == "lm" else RowClassifier(config)
