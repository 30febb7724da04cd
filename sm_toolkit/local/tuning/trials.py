"""One tuning trial: its CreateTrainingJob request run by the local engine (``run_job``),
watched through its log lines.

The objective is read the way SageMaker reads it: the objective's metric-definition regex
applied to every log line; each value is an intermediate result (step 1, 2, ... in the order
printed), and the final objective is the job's FinalMetricDataList value (else the last one).
Intermediate values go to the optuna trial as they arrive, and when the study's pruner says
so the trial's ``stop_event`` is set (the engine then stops the job like StopTrainingJob and
it ends ``Stopped``, as an early-stopped SageMaker training job does).
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sm_toolkit.local.metrics import leader_text
from sm_toolkit.local.tuning.request import decode_value
from sm_toolkit.local.tuning.trial_job import trial_request

RunJob = Callable[..., Any]
# The optuna user attribute holding a finished trial's record (what a resume reads back).
RECORD_ATTR = "record"


def trial_name(tuning_job_name: str, index: int) -> str:
    """SageMaker's training-job name for a tuning trial: ``<tuning job>-<NNN>-<8 hex>``."""
    return f"{tuning_job_name}-{index:03d}-{secrets.token_hex(4)}"


@dataclass
class TrialRecord:
    """What the leaderboard, plots and the warm-start store keep about one trial.

    ``hyperparameters`` are the tuned values as the training container decodes them
    (``"\\"adam\\""`` -> ``"adam"``, ``"0.5"`` -> ``0.5``).
    """

    index: int
    name: str
    hyperparameters: dict[str, Any]
    status: str  # Completed | Failed | Stopped (SageMaker training-job statuses)
    objective: float | None = None
    intermediate: list[float] = field(default_factory=list)
    early_stopped: bool = False
    failure_reason: str | None = None
    seconds: float = 0.0
    model_artifacts: str | None = None
    job_dir: str | None = None  # where the engine left the job (describe.json, host logs)

    @property
    def epochs(self) -> int:
        """Resource spent: objective values the job printed (one per epoch)."""
        return len(self.intermediate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, kw_only=True)
class TrialContext:
    """Everything a trial needs besides its own values; shared by all trials of a job."""

    request: Mapping[str, Any]  # the CreateHyperParameterTuningJob request
    run_job: RunJob
    jobs_dir: Path
    objective_metric: str
    objective_regex: str
    prune: bool = False
    # The tuning job's MLflow run: each trial's engine run becomes its child.
    tracking_parent: Any = None
    # Set when the tuning job itself is interrupted (Ctrl-C): trials it stopped are not
    # results, so they are not recorded and a resume runs them again.
    interrupted: threading.Event = field(default_factory=threading.Event)


class _ObjectiveWatch:
    """Collects objective values from log lines; reports them and asks the pruner."""

    def __init__(self, ctx: TrialContext, trial: optuna.Trial, stop: threading.Event) -> None:
        self._ctx = ctx
        self._trial = trial
        self._stop = stop
        self._pattern = re.compile(ctx.objective_regex)
        self._lock = threading.Lock()
        self.values: list[float] = []
        self.pruned = False

    def on_line(self, line: str) -> None:
        # One value per epoch: with several hosts each rank may print the objective, and
        # counting every host's copy would double the epochs the pruner sees.
        text = leader_text(line)
        if text is None:
            return
        for match in self._pattern.finditer(text):
            try:
                value = float(match.group(1))
            except (IndexError, ValueError):
                continue  # SageMaker skips a match that is not a number, and so do we
            self._observe(value)

    def _observe(self, value: float) -> None:
        with self._lock:
            self.values.append(value)
            # Lines printed after the stop was requested still cost epochs, but the pruner
            # has already decided; reporting them would only blur the rung statistics.
            if self._stop.is_set() or not math.isfinite(value):
                return
            self._trial.report(value, len(self.values))
            if self._ctx.prune and self._trial.should_prune():
                self.pruned = True
                self._stop.set()


def run_trial(
    ctx: TrialContext,
    study: optuna.Study,
    trial: optuna.Trial,
    *,
    index: int,
    name: str,
    tuned_values: Mapping[str, Any],
    stop: threading.Event,
) -> TrialRecord:
    """Run one trial to the end, tell the study its outcome and return its record.

    ``tuned_values`` are the values the trial's request carries (categorical ones as sent).
    """
    watch = _ObjectiveWatch(ctx, trial, stop)
    decoded = {k: decode_value(v) for k, v in tuned_values.items()}
    record = TrialRecord(index=index, name=name, hyperparameters=decoded, status="Failed")
    started = time.monotonic()
    try:
        request = trial_request(ctx.request, name, tuned_values)
        extra = {} if ctx.tracking_parent is None else {"tracking_parent": ctx.tracking_parent}
        document = ctx.run_job(
            request, workdir=ctx.jobs_dir, on_line=watch.on_line, stop_event=stop, **extra
        )
    except Exception as exc:  # an engine error fails this trial, not the tuning job
        record.failure_reason = f"{type(exc).__name__}: {exc}"
        record.intermediate = list(watch.values)
        record.seconds = time.monotonic() - started
        trial.set_user_attr(RECORD_ATTR, record.to_dict())
        study.tell(trial, state=TrialState.FAIL)
        return record
    _fill_from_document(record, document, watch, ctx.objective_metric)
    record.seconds = time.monotonic() - started
    job_dir = ctx.jobs_dir / "jobs" / name  # the engine's <workdir>/jobs/<name>
    record.job_dir = str(job_dir) if job_dir.is_dir() else None
    if ctx.interrupted.is_set():
        study.tell(trial, state=TrialState.FAIL)
        return record
    trial.set_user_attr(RECORD_ATTR, record.to_dict())
    study.tell(trial, **_tell_args(record))
    return record


def _fill_from_document(record: TrialRecord, doc: Mapping, watch: _ObjectiveWatch, metric: str):
    """Record what the trial's DescribeTrainingJob document says."""
    record.intermediate = list(watch.values)
    record.model_artifacts = (doc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    record.status = doc.get("TrainingJobStatus", "Failed")
    record.failure_reason = doc.get("FailureReason")
    record.early_stopped = watch.pruned and record.status == "Stopped"
    finals = {m["MetricName"]: m["Value"] for m in doc.get("FinalMetricDataList") or []}
    final = finals.get(metric)
    if final is None and watch.values:
        final = watch.values[-1]
    record.objective = float(final) if final is not None and math.isfinite(final) else None
    if record.status == "Completed" and record.objective is None:
        # SageMaker's ObjectiveStatus Failed: the job ran but never printed the objective.
        record.status = "Failed"
        record.failure_reason = f"no value for objective metric {metric!r} in the training logs"


def _tell_args(record: TrialRecord) -> dict[str, Any]:
    if record.status == "Completed":
        return {"values": record.objective}
    if record.status == "Stopped" and record.intermediate:
        # A stopped trial counts as pruned: its partial curve still informs sampler and pruner.
        return {"state": TrialState.PRUNED}
    return {"state": TrialState.FAIL}
