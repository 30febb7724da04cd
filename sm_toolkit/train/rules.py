"""SageMaker Debugger built-in rules, evaluated locally on what the trainer recorded.

Names follow SM_TOOLKIT_RULES (comma separated). Defaults are the thresholds SageMaker
documents for each rule. Each rule returns a `RuleResult`; the trainer prints
`[rule] <name>: IssuesFound|NoIssuesFound (<detail>)` and puts them in metrics.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sm_toolkit.train.monitor import ActivationStats, GradientFlow

VANISHING_THRESHOLD = 1e-7  # VanishingGradient.threshold
DEAD_RELU_LAYER_PERCENT = 50.0  # DeadRelu.threshold_layer (threshold_inactivity = 1 %)
SATURATED_LAYER_PERCENT = 50.0  # SaturatedActivation.threshold_layer
LOSS_NUM_STEPS = 10  # LossNotDecreasing.num_steps
LOSS_DIFF_PERCENT = 0.1  # LossNotDecreasing.diff_percent
LOSS_INCREASE_PERCENT = 5.0  # LossNotDecreasing.increase_threshold_percent
OVERFIT_RATIO = 0.1  # Overfit.ratio_threshold
OVERFIT_PATIENCE = 1  # Overfit.patience


@dataclass(frozen=True)
class RuleResult:
    name: str
    issues_found: bool
    detail: str
    evaluated: bool = True  # False: a SageMaker rule that sm-toolkit does not implement

    @property
    def status(self) -> str:
        if not self.evaluated:
            return "NotEvaluatedLocally"
        return "IssuesFound" if self.issues_found else "NoIssuesFound"

    def line(self) -> str:
        return f"[rule] {self.name}: {self.status} ({self.detail})"

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


@dataclass
class Observations:
    """Everything the rules look at, filled in by the trainer."""

    step_losses: list[float]
    epoch_train_loss: list[float]
    epoch_val_loss: list[float]
    grads: GradientFlow
    activations: ActivationStats | None
    non_finite_steps: list[int]


def vanishing_gradient(obs: Observations) -> RuleResult:
    worst = [(min(v), name) for name, v in obs.grads.mean_abs.items() if v]
    tiny = [(v, n) for v, n in worst if v < VANISHING_THRESHOLD]
    if tiny:
        v, n = min(tiny)
        return RuleResult("vanishing_gradient", True, f"{n}: mean |grad| {v:.2e} < 1e-07")
    if not worst:
        return RuleResult("vanishing_gradient", False, "no gradients recorded")
    v, n = min(worst)
    return RuleResult("vanishing_gradient", False, f"smallest mean |grad| {v:.2e} in {n}")


def exploding_tensor(obs: Observations) -> RuleResult:
    bad = obs.non_finite_steps
    if bad:
        return RuleResult("exploding_tensor", True, f"NaN/Inf loss or gradient at step {bad[0]}")
    return RuleResult("exploding_tensor", False, "loss and gradients finite at every step")


def _layer_share_rule(name: str, obs: Observations, kinds: set[str], limit: float, what: str):
    acts = obs.activations
    records = (
        {} if acts is None else {k: v for k, v in acts.records.items() if acts.kinds[k] in kinds}
    )
    if not records:
        return RuleResult(name, False, f"no {'/'.join(sorted(kinds))} layers")
    # Judge the latest sample of each layer: units dying during training is the failure mode.
    latest = {layer: recs[-1] for layer, recs in records.items() if recs}
    layer, (step, share) = max(latest.items(), key=lambda kv: kv[1][1])
    found = share * 100 > limit
    return RuleResult(name, found, f"{layer}: {share:.0%} of units {what} at step {step}")


def dead_relu(obs: Observations) -> RuleResult:
    return _layer_share_rule("dead_relu", obs, {"relu"}, DEAD_RELU_LAYER_PERCENT, "dead")


def saturated_activation(obs: Observations) -> RuleResult:
    return _layer_share_rule(
        "saturated_activation", obs, {"tanh", "sigmoid"}, SATURATED_LAYER_PERCENT, "saturated"
    )


def loss_not_decreasing(obs: Observations) -> RuleResult:
    """Mean loss of the last num_steps steps vs the num_steps before (window means, not
    single steps, so mini-batch noise alone does not trigger it)."""
    losses, n = obs.step_losses, LOSS_NUM_STEPS
    if len(losses) < 2 * n:
        return RuleResult("loss_not_decreasing", False, f"fewer than {2 * n} steps")
    prev = sum(losses[-2 * n : -n]) / n
    cur = sum(losses[-n:]) / n
    change = (prev - cur) / abs(prev) * 100 if prev else 0.0
    detail = f"mean loss {prev:.4f} -> {cur:.4f} over the last {2 * n} steps ({change:+.2f}%)"
    if -change > LOSS_INCREASE_PERCENT:
        return RuleResult("loss_not_decreasing", True, "increased: " + detail)
    return RuleResult("loss_not_decreasing", change < LOSS_DIFF_PERCENT, detail)


def overfit(obs: Observations) -> RuleResult:
    pairs = list(zip(obs.epoch_train_loss, obs.epoch_val_loss, strict=False))
    run, worst = 0, 0.0
    for train, val in pairs:
        ratio = (val - train) / train if train > 0 and math.isfinite(val) else 0.0
        worst = max(worst, ratio)
        run = run + 1 if ratio > OVERFIT_RATIO else 0
        if run >= OVERFIT_PATIENCE:
            return RuleResult("overfit", True, f"(val - train) / train = {ratio:.2f} > 0.1")
    return RuleResult("overfit", False, f"max (val - train) / train = {worst:.2f} <= 0.1")


RULES: dict[str, Callable[[Observations], RuleResult]] = {
    "vanishing_gradient": vanishing_gradient,
    "exploding_tensor": exploding_tensor,
    "dead_relu": dead_relu,
    "saturated_activation": saturated_activation,
    "loss_not_decreasing": loss_not_decreasing,
    "overfit": overfit,
}

# SageMaker's own spellings (rule_configs.vanishing_gradient() -> "VanishingGradient").
_ALIASES = {name.replace("_", ""): name for name in RULES}


def normalise_rule_names(names: Sequence[str]) -> tuple[str, ...]:
    """Accept snake_case or SageMaker's CamelCase. A rule sm-toolkit does not implement keeps
    its name: it is reported as not evaluated locally, never a job failure (the spec has
    already checked that it is a SageMaker built-in rule)."""
    out = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        out.append(_ALIASES.get(name.replace("_", "").replace("-", "").lower(), name))
    return tuple(out)


def evaluate_rules(names: Sequence[str], obs: Observations) -> list[RuleResult]:
    """Each rule's verdict; the ones sm-toolkit does not implement as not evaluated."""
    return [RULES[name](obs) if name in RULES else _not_evaluated(name) for name in names]


def _not_evaluated(name: str) -> RuleResult:
    detail = "not evaluated locally; sm-toolkit evaluates " + ", ".join(RULES)
    return RuleResult(name, False, detail, evaluated=False)
