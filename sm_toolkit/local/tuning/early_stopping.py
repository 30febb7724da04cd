"""Early stopping ``Auto``: SageMaker's documented median rule as an optuna pruner.

SageMaker's rule (automatic-model-tuning-early-stopping): after each epoch, take the objective
value of the current training job; for every previous training job, take the running average
of its objective up to the same epoch; stop the current job when its value is worse than the
median of those running averages.

optuna's ``MedianPruner`` compares against the median of previous trials' values *at* step k,
not their running averages up to k, so it stops more often than SageMaker when curves fall
steeply (a running average lags behind the curve). Hence this small pruner.
"""

from __future__ import annotations

import statistics

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

# "Previous training jobs" = finished ones: trials still running have no settled curve.
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class RunningAverageMedianPruner(BasePruner):
    """Prune a trial whose value at step k is worse than the median of finished trials'
    running averages up to step k.

    Args:
        n_startup_trials: no pruning until this many finished trials reached step k (a median
            of one or two curves says little; SageMaker does not document its own threshold).
        n_warmup_steps: no pruning at steps <= this (0 = judge from the first epoch on, as the
            documented rule does).
    """

    def __init__(self, *, n_startup_trials: int = 3, n_warmup_steps: int = 0) -> None:
        if n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be >= 1, got {n_startup_trials}")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps must be >= 0, got {n_warmup_steps}")
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step <= self.n_warmup_steps:
            return False
        value = trial.intermediate_values[step]
        averages = [
            running_average(t.intermediate_values, step)
            for t in study.get_trials(deepcopy=False, states=_FINISHED)
            if step in t.intermediate_values
        ]
        if len(averages) < self.n_startup_trials:
            return False
        median = statistics.median(averages)
        if study.direction == StudyDirection.MAXIMIZE:
            return value < median
        return value > median


def running_average(values: dict[int, float], step: int) -> float:
    """Mean of a trial's intermediate values at steps <= ``step``."""
    upto = [v for s, v in values.items() if s <= step]
    return sum(upto) / len(upto)
