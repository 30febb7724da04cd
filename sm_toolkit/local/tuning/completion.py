"""When a tuning job stops launching trials: SageMaker's completion criteria and limits.

Reasons are named after SageMaker's: ``MaxNumberOfTrainingJobsReached``,
``TargetObjectiveMetricValueReached``, ``MaxNumberOfTrainingJobsNotImproving``,
``ConvergenceDetected`` and ``MaxRuntimeExceeded``. A criterion only stops new launches;
trials already running finish (MaxRuntime alone stops them too, as on SageMaker).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

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
        self._completed: list[float] = []
        self.reason: str | None = None

    def better(self, a: float, b: float) -> bool:
        return a > b if self._maximize else a < b

    def update(self, record: TrialRecord) -> None:
        """Account for a finished trial; sets ``reason`` once a criterion is met."""
        if record.status == "Completed" and record.objective is not None:
            self._completed.append(record.objective)
            if self.best is None or self.better(record.objective, self.best.objective):
                self.best = record
                self.not_improving = 0
            else:
                self.not_improving += 1
        else:
            # Failed and stopped jobs did not improve the best either.
            self.not_improving += 1
        if self.reason is None:
            self.reason = self._criterion_met()

    def _criterion_met(self) -> str | None:
        best = self.best.objective if self.best else None
        if self._target is not None and best is not None:
            if best == self._target or self.better(best, self._target):
                return "TargetObjectiveMetricValueReached"
        if self._patience is not None and self.not_improving >= self._patience:
            return "MaxNumberOfTrainingJobsNotImproving"
        if self._convergence and converged(self._completed, maximize=self._maximize):
            return "ConvergenceDetected"
        return None

    def runtime_exceeded(self) -> bool:
        if self._max_runtime is None:
            return False
        return self._clock() - self._started >= self._max_runtime


# Convergence needs this many completed trials before it is judged at all.
MIN_TRIALS_FOR_CONVERGENCE = 10
# "No real progress": the best improved by less than this share of the objective's spread.
CONVERGENCE_TOLERANCE = 0.01


def converged(objectives: Sequence[float], *, maximize: bool) -> bool:
    """Completed trials' objectives, in completion order -> has the search converged?

    SageMaker does not document its convergence test. This rule: with at least
    ``MIN_TRIALS_FOR_CONVERGENCE`` completed trials, the best objective improved by less than
    ``CONVERGENCE_TOLERANCE`` of the spread of all objectives over the later half of them.
    (optuna's regret-bound Terminator was tried first: it needs ~30 trials before it can
    judge and a Gaussian-process fit costing seconds per trial on this 2-core machine.)
    """
    n = len(objectives)
    if n < MIN_TRIALS_FOR_CONVERGENCE:
        return False
    pick = max if maximize else min
    before, overall = pick(objectives[: n - n // 2]), pick(objectives)
    spread = max(objectives) - min(objectives)
    return abs(overall - before) <= CONVERGENCE_TOLERANCE * spread
