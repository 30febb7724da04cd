"""When a tuning job stops launching trials: SageMaker's completion criteria and limits.

Reasons are named after SageMaker's: ``MaxNumberOfTrainingJobsReached``,
``TargetObjectiveMetricValueReached``, ``MaxNumberOfTrainingJobsNotImproving``,
``ConvergenceDetected`` and ``MaxRuntimeExceeded``. A criterion only stops new launches;
trials already running finish (MaxRuntime alone stops them too, as on SageMaker).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna

from sm_toolkit.local.tuning.trials import TrialRecord


class CompletionTracker:
    """Tracks the best objective as trials finish and says when to stop launching."""

    def __init__(self, tuning: Any, *, clock=time.monotonic) -> None:
        self._maximize = tuning.objective.type == "Maximize"
        completion = tuning.completion
        self._target = completion.target_objective_value if completion else None
        self._patience = completion.max_jobs_not_improving if completion else None
        self._convergence = bool(completion and completion.complete_on_convergence)
        self._max_runtime = tuning.max_runtime_seconds
        self._clock = clock
        self._started = clock()
        self.best: TrialRecord | None = None
        self.not_improving = 0
        self.reason: str | None = None

    def better(self, a: float, b: float) -> bool:
        return a > b if self._maximize else a < b

    def update(self, record: TrialRecord, study: optuna.Study | None = None) -> None:
        """Account for a finished trial; sets ``reason`` once a criterion is met."""
        if record.status == "Completed" and record.objective is not None:
            if self.best is None or self.better(record.objective, self.best.objective):
                self.best = record
                self.not_improving = 0
            else:
                self.not_improving += 1
        else:
            # Failed and stopped jobs did not improve the best either.
            self.not_improving += 1
        if self.reason is None:
            self.reason = self._criterion_met(study)

    def _criterion_met(self, study: optuna.Study | None) -> str | None:
        best = self.best.objective if self.best else None
        if self._target is not None and best is not None:
            if best == self._target or self.better(best, self._target):
                return "TargetObjectiveMetricValueReached"
        if self._patience is not None and self.not_improving >= self._patience:
            return "MaxNumberOfTrainingJobsNotImproving"
        if self._convergence and study is not None and converged(study):
            return "ConvergenceDetected"
        return None

    def runtime_exceeded(self) -> bool:
        if self._max_runtime is None:
            return False
        return self._clock() - self._started >= self._max_runtime


# The regret-bound terminator needs some completed trials to fit its Gaussian process.
_MIN_TRIALS_FOR_CONVERGENCE = 8


def converged(study: optuna.Study) -> bool:
    """optuna's Terminator (regret bound below the median error of the objective): SageMaker
    does not document its convergence test, so this uses the library's own."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < _MIN_TRIALS_FOR_CONVERGENCE:
        return False
    from optuna.terminator import MedianErrorEvaluator, RegretBoundEvaluator, Terminator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        terminator = Terminator(
            improvement_evaluator=RegretBoundEvaluator(),
            error_evaluator=MedianErrorEvaluator(RegretBoundEvaluator()),
            min_n_trials=_MIN_TRIALS_FOR_CONVERGENCE,
        )
        return bool(terminator.should_terminate(study))
