"""Warm start: parent tuning jobs' trials added to the optuna study as finished trials.

A parent is looked up in the local store first (``<workdir>/tuning/<parent>/results.json``),
then on SageMaker with boto3 (DescribeHyperParameterTuningJob for the objective and the names
of static and tuned hyperparameters, ListTrainingJobsForHyperParameterTuningJob for each
trial's tuned values and final objective).

Both warm-start types need the parent's objective metric and type to match (as SageMaker
requires). How a parent trial enters the new study:

- ``IdenticalDataAndAlgorithm``: same data and algorithm, so the parent's trials are
  observations of this very problem. A trial is added only when every tuned parameter has a
  value inside the new ranges (a parameter tuned now but static in the parent takes the
  parent's static value) and every parameter that is static now had the same value in the
  parent; its per-epoch values come along so the early-stopping rule can use them too.
- ``TransferLearning``: the data or ranges changed, so parent trials are hints only. Each
  keeps the parameters that lie inside the new ranges (the others are dropped), a trial with
  none left is skipped, and no per-epoch values are carried over (those curves were measured
  on other data and must not decide which of this job's trials to stop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning.request import decode_value, is_user_hyperparameter
from sm_toolkit.local.tuning.search import SearchSpace
from sm_toolkit.local.tuning.store import read_results, results_path

_FIELD = "WarmStartConfig.ParentHyperParameterTuningJobs"


@dataclass(frozen=True)
class ParentTrial:
    name: str
    hyperparameters: Mapping[str, Any]
    status: str
    objective: float | None
    intermediate: tuple[float, ...] = ()


@dataclass(frozen=True)
class ParentJob:
    name: str
    source: str  # "local" | "sagemaker"
    objective_metric: str
    objective_type: str
    tuned_names: frozenset[str]
    static_hyperparameters: Mapping[str, Any]
    trials: tuple[ParentTrial, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------- loading parents


def load_local_parent(path: Path) -> ParentJob:
    doc = read_results(path)
    trials = tuple(
        ParentTrial(
            name=t["name"],
            hyperparameters=t["hyperparameters"],
            status=t["status"],
            objective=t.get("objective"),
            intermediate=tuple(t.get("intermediate") or ()),
        )
        for t in doc["trials"]
    )
    return ParentJob(
        name=doc["tuning_job_name"],
        source="local",
        objective_metric=doc["objective"]["metric"],
        objective_type=doc["objective"]["type"],
        tuned_names=frozenset(doc["ranges"]),
        static_hyperparameters=doc["static_hyperparameters"],
        trials=trials,
    )


def load_sagemaker_parent(name: str, client: Any) -> ParentJob:
    """A parent tuning job that ran on SageMaker, read through a boto3 SageMaker client."""
    desc = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = desc["HyperParameterTuningJobConfig"]
    ranges = config.get("ParameterRanges", {})
    tuned = {
        r["Name"]
        for kind in ("ContinuousParameterRanges", "IntegerParameterRanges")
        for r in ranges.get(kind, [])
    } | {r["Name"] for r in ranges.get("CategoricalParameterRanges", [])}
    definition = (
        desc.get("TrainingJobDefinition") or (desc.get("TrainingJobDefinitions") or [{}])[0]
    )
    static = {
        k: decode_value(v)
        for k, v in definition.get("StaticHyperParameters", {}).items()
        if is_user_hyperparameter(k)
    }
    objective = config["HyperParameterTuningJobObjective"]
    return ParentJob(
        name=name,
        source="sagemaker",
        objective_metric=objective["MetricName"],
        objective_type=objective["Type"],
        tuned_names=frozenset(tuned),
        static_hyperparameters=static,
        trials=tuple(_list_sagemaker_trials(name, client)),
    )


def _list_sagemaker_trials(name: str, client: Any) -> list[ParentTrial]:
    trials: list[ParentTrial] = []
    kwargs: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
    while True:
        page = client.list_training_jobs_for_hyper_parameter_tuning_job(**kwargs)
        for summary in page.get("TrainingJobSummaries", []):
            final = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            trials.append(
                ParentTrial(
                    name=summary["TrainingJobName"],
                    hyperparameters=dict(summary.get("TunedHyperParameters", {})),
                    status=summary["TrainingJobStatus"],
                    objective=final.get("Value"),
                )
            )
        if not page.get("NextToken"):
            return trials
        kwargs["NextToken"] = page["NextToken"]


def load_parent(name: str, *, workdir: Path, client_factory: Callable[[], Any]) -> ParentJob:
    """The local parent if one was stored under ``workdir``, else the SageMaker one."""
    local = results_path(workdir, name)
    if local.exists():
        return load_local_parent(local)
    try:
        return load_sagemaker_parent(name, client_factory())
    except Exception as exc:  # botocore ClientError, NoCredentialsError, ...
        raise ConfigError(
            _FIELD,
            name,
            f"a parent is a local tuning job under {local.parent.parent} or a SageMaker "
            f"tuning job; none found locally, and SageMaker said: {exc}",
        ) from exc


# ---------------------------------------------------------------- parents -> optuna trials


def check_compatible(parent: ParentJob, tuning: Any, static_now: Mapping[str, Any]) -> None:
    """The checks SageMaker makes on a warm start's parents."""
    objective = tuning.objective
    if (parent.objective_metric, parent.objective_type) != (objective.metric, objective.type):
        raise ConfigError(
            _FIELD,
            parent.name,
            f"a parent must have the same objective; it has {parent.objective_type} "
            f"{parent.objective_metric!r}, this job {objective.type} {objective.metric!r}",
        )
    names_then = parent.tuned_names | set(parent.static_hyperparameters)
    names_now = set(tuning.ranges) | {k for k in static_now if is_user_hyperparameter(k)}
    if tuning.warm_start.type == "IdenticalDataAndAlgorithm" and names_then != names_now:
        raise ConfigError(
            _FIELD,
            parent.name,
            "IdenticalDataAndAlgorithm needs the same static + tuned hyperparameter names; "
            f"differing: {sorted(names_then ^ names_now)} (use TransferLearning)",
        )


def to_frozen_trial(
    trial: ParentTrial,
    parent: ParentJob,
    space: SearchSpace,
    *,
    identical: bool,
    static_now: Mapping[str, Any],
) -> FrozenTrial | None:
    """A parent trial as a finished optuna trial, or None when it cannot inform this study."""
    state = _state(trial)
    if state is None:
        return None
    values = {**parent.static_hyperparameters, **trial.hyperparameters}
    params = space.encode(values)
    if identical:
        if len(params) != len(space.distributions) or _static_changed(parent, values, static_now):
            return None
    elif not params:
        return None
    steps = dict(enumerate(trial.intermediate, start=1)) if identical else {}
    return optuna.trial.create_trial(
        state=state,
        value=trial.objective if state == TrialState.COMPLETE else None,
        params=params,
        distributions={k: space.distributions[k] for k in params},
        intermediate_values=steps,
        user_attrs={"parent": parent.name, "parent_trial": trial.name},
    )


def _state(trial: ParentTrial) -> TrialState | None:
    if trial.status == "Completed" and trial.objective is not None:
        return TrialState.COMPLETE
    if trial.status == "Stopped":
        return TrialState.PRUNED
    return None  # Failed / InProgress: nothing learned


def _static_changed(parent: ParentJob, values: Mapping[str, Any], static_now: Mapping) -> bool:
    """True when a parameter the parent tuned is static now, at a value the trial did not use."""
    return any(
        name in values and not _same_value(values[name], now)
        for name, now in static_now.items()
        if name in parent.tuned_names
    )


def _same_value(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a).strip('"') == str(b).strip('"')


@dataclass(frozen=True)
class WarmStartSummary:
    parents: tuple[str, ...]
    added: int
    skipped: int


def warm_start(
    study: optuna.Study,
    space: SearchSpace,
    tuning: Any,
    static_now: Mapping[str, Any],
    *,
    workdir: Path,
    client_factory: Callable[[], Any],
    log: Callable[[str], None],
) -> WarmStartSummary:
    """Load every parent and add its usable trials to ``study``."""
    identical = tuning.warm_start.type == "IdenticalDataAndAlgorithm"
    added = skipped = 0
    for name in tuning.warm_start.parents:
        parent = load_parent(name, workdir=workdir, client_factory=client_factory)
        check_compatible(parent, tuning, static_now)
        n_added = 0
        for trial in parent.trials:
            frozen = to_frozen_trial(
                trial, parent, space, identical=identical, static_now=static_now
            )
            if frozen is not None:
                study.add_trial(frozen)
                n_added += 1
        added += n_added
        skipped += len(parent.trials) - n_added
        log(
            f"[tune] warm start ({tuning.warm_start.type}) from {parent.source} parent "
            f"{parent.name}: {n_added} of {len(parent.trials)} trials added"
        )
    return WarmStartSummary(parents=tuple(tuning.warm_start.parents), added=added, skipped=skipped)
