"""Activation functions by name, shared by every model family.

`make_activation("gelu", approximate="tanh")` returns an `nn.Module`. Torch's own modules
are used wherever they exist; only `Swish` (with a learnable-or-fixed beta) and `Maxout`
are written here. Output heads use `make_output_activation("softmax" | "sigmoid")`.

Legend for tensor names: B batch, D features, K maxout pieces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sm_toolkit.errors import ConfigError


class Swish(nn.Module):
    """x * sigmoid(beta * x). beta = 1 is SiLU; beta can be learned (Ramachandran et al.)."""

    def __init__(self, beta: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        beta_t = torch.tensor(float(beta))
        if learnable:
            self.beta = nn.Parameter(beta_t)
        else:
            self.register_buffer("beta", beta_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta):g}"


class Maxout(nn.Module):
    """Max over `k` groups of features along `dim` (Goodfellow et al. 2013).

    The layer before must produce k times the features wanted: (B, D*K, ...) -> (B, D, ...).
    Channel c of the output is the max of input channels c*K .. c*K+K-1.
    """

    def __init__(self, k: int = 2, dim: int = 1) -> None:
        super().__init__()
        self.k = k
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim % x.dim()
        size = x.shape[dim]
        if size % self.k:
            raise ValueError(
                f"maxout: dimension {dim} has {size} features, not a multiple of k={self.k}"
            )
        shape = (*x.shape[:dim], size // self.k, self.k, *x.shape[dim + 1 :])
        return x.reshape(shape).amax(dim=dim + 1)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}"


def _positive(name: str, field: str, value: float) -> float:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"activation {name}.{field}", value, "a number > 0")
    return float(value)


def _sigmoid() -> nn.Module:
    return nn.Sigmoid()


def _tanh() -> nn.Module:
    return nn.Tanh()


def _relu() -> nn.Module:
    return nn.ReLU()


def _leaky_relu(alpha: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope=_positive("leaky_relu", "alpha", alpha))


def _prelu(alpha: float = 0.25, num_parameters: int = 1) -> nn.Module:
    if not isinstance(num_parameters, int) or num_parameters < 1:
        raise ConfigError("activation prelu.num_parameters", num_parameters, "an integer >= 1")
    return nn.PReLU(num_parameters=num_parameters, init=_positive("prelu", "alpha", alpha))


def _elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha=_positive("elu", "alpha", alpha))


def _swish(beta: float = 1.0, learnable: bool = False) -> nn.Module:
    return Swish(beta=_positive("swish", "beta", beta), learnable=bool(learnable))


def _silu() -> nn.Module:
    return nn.SiLU()


def _gelu(approximate: str = "none") -> nn.Module:
    if approximate not in ("none", "tanh"):
        raise ConfigError("activation gelu.approximate", approximate, "one of 'none', 'tanh'")
    return nn.GELU(approximate=approximate)


def _gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


def _maxout(k: int = 2, dim: int = 1) -> nn.Module:
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ConfigError("activation maxout.k", k, "an integer >= 2")
    return Maxout(k=k, dim=dim)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "elu": _elu,
    "swish": _swish,
    "silu": _silu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "maxout": _maxout,
}

ACTIVATIONS: tuple[str, ...] = tuple(_FACTORIES)


def make_activation(name: str, **params: object) -> nn.Module:
    """Build the activation `name` with its parameters, e.g. `make_activation("elu", alpha=0.5)`.

    Raises ConfigError for an unknown name, an unknown parameter or a bad value.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    factory = _FACTORIES.get(key)
    if factory is None:
        raise ConfigError("activation", name, f"one of {', '.join(ACTIVATIONS)}")
    try:
        return factory(**params)
    except TypeError as err:  # unexpected keyword: name what the activation accepts
        accepted = factory.__code__.co_varnames[: factory.__code__.co_argcount]
        raise ConfigError(
            f"activation {key} parameters",
            sorted(params),
            f"accepted: {', '.join(accepted) or 'none'}",
        ) from err


def activation_width_factor(name: str, **params: object) -> int:
    """How many times more features the layer before an activation must produce (maxout: k)."""
    if name == "maxout":
        return int(params.get("k", 2))  # type: ignore[arg-type]
    return 1


def make_output_activation(kind: str) -> nn.Module:
    """Output head: 'softmax' (multi-class, one label), 'sigmoid' (multi-label), 'none' (logits).

    Losses take logits (cross_entropy / BCE-with-logits are more stable), so this is only
    applied at prediction time.
    """
    if kind == "softmax":
        return nn.Softmax(dim=-1)
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "none":
        return nn.Identity()
    raise ConfigError("output activation", kind, "one of 'softmax', 'sigmoid', 'none'")
