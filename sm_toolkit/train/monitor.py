"""What the trainer watches besides the loss: gradient flow and activation health.

GradientFlow records mean |grad| of each weight tensor at sampled steps (the data behind the
gradient-flow plot and the vanishing/exploding checks). ActivationStats hooks ReLU, tanh and
sigmoid modules at sampled steps and records, per layer, the share of units that are dead
(ReLU) or saturated (tanh/sigmoid inputs beyond SageMaker Debugger's thresholds).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

# SageMaker Debugger's SaturatedActivation defaults: beyond these inputs the derivative of
# tanh / sigmoid is ~0 in float32.
TANH_LIMITS = (-9.4999, 9.4999)
SIGMOID_LIMITS = (-23.0, 16.99999)


def _layer_name(name: str) -> str:
    return name.removeprefix("module.").removeprefix("_orig_mod.").removesuffix(".weight")


class GradientFlow:
    """mean |grad| per weight tensor, sampled every `every` steps."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [
            _layer_name(n) for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1
        ]
        self.steps: list[int] = []
        self.mean_abs: dict[str, list[float]] = defaultdict(list)

    def record(self, model: nn.Module, step: int) -> None:
        self.steps.append(step)
        for name, p in model.named_parameters():
            if p.requires_grad and p.dim() > 1:
                value = p.grad.abs().mean().item() if p.grad is not None else 0.0
                self.mean_abs[_layer_name(name)].append(value)

    def state_dict(self) -> dict:
        return {
            "steps": list(self.steps),
            "mean_abs": {k: list(v) for k, v in self.mean_abs.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state.get("steps", []))
        self.mean_abs = defaultdict(
            list, {k: list(v) for k, v in state.get("mean_abs", {}).items()}
        )


def _unit_share(mask: torch.Tensor) -> torch.Tensor:
    """Per-unit fraction of samples where `mask` holds. Units: channels (4-D) or last dim."""
    if mask.dim() == 4:  # (B, C, H, W): a unit is a channel
        return mask.float().mean(dim=(0, 2, 3))
    return mask.float().reshape(-1, mask.shape[-1]).mean(dim=0)


class ActivationStats:
    """Dead-ReLU and saturation shares per activation layer at sampled steps."""

    def __init__(self, model: nn.Module, *, threshold_inactivity: float = 1.0) -> None:
        self.threshold = threshold_inactivity / 100.0
        self.active = False
        self.records: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.kinds: dict[str, str] = {}
        self._step = 0
        self._handles = []
        for name, module in model.named_modules():
            kind = self._kind(module)
            if kind:
                self.kinds[_layer_name(name)] = kind
                self._handles.append(
                    module.register_forward_hook(self._hook(_layer_name(name), kind))
                )

    @staticmethod
    def _kind(module: nn.Module) -> str | None:
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            return "relu"
        if isinstance(module, nn.Tanh):
            return "tanh"
        if isinstance(module, nn.Sigmoid):
            return "sigmoid"
        return None

    def _hook(self, name: str, kind: str):
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not self.active:
                return
            with torch.no_grad():
                if kind == "relu":
                    # A unit is dead when it fires on fewer than threshold of the samples.
                    bad = _unit_share(output > 0) < self.threshold
                else:
                    lo, hi = TANH_LIMITS if kind == "tanh" else SIGMOID_LIMITS
                    x = inputs[0]
                    not_saturated = _unit_share((x > lo) & (x < hi))
                    bad = not_saturated < self.threshold
                self.records[name].append((self._step, bad.float().mean().item()))

        return hook

    def sample(self, step: int) -> None:
        """Record the next forward pass (call before a training forward)."""
        self._step = step
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
