"""A local tuning job in MLflow: one parent run, and each trial's run (the one the engine
makes for the trial's training job) its child through ``mlflow.parentRunId``.

The tuner passes the parent's id to the engine with each trial, so a trial has exactly one
run. Once a trial ends the tuner tags its run with what only the tuner knows: the trial's
status as AMT reports it (Completed; Stopped by early stopping; Pruned by Hyperband; Failed,
with the reason), and the objective. The parent logs the objective of each finished trial
(step = trial index) and, at the end, names the best trial (``sm-toolkit.best_trial`` on the
parent, ``sm-toolkit.best = true`` on the child).

The parent's id lives in the optuna study, so ``tune --local --resume`` continues the same
parent: finished trials keep their one child each; the runs of trials a killed run left
behind are ended and tagged ``Interrupted`` (those trials run again under new names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_toolkit import contract
from sm_toolkit.local import tracking
from sm_toolkit.local.tuning.request import TuningConfig
from sm_toolkit.local.tuning.trials import TrialRecord

PARENT_ATTR = "mlflow_parent_run_id"  # optuna study user attribute
STATUS_TAG = "sm-toolkit.trial_status"
BEST_TAG = "sm-toolkit.best"
BEST_TRIAL_TAG = "sm-toolkit.best_trial"
TUNING_JOB_TAG = "sagemaker.tuning_job_name"


def trial_status(record: TrialRecord, *, hyperband: bool) -> str:
    """AMT's word for how a trial ended."""
    if record.status == "Completed":
        return "Completed"
    if record.early_stopped:
        return "Pruned" if hyperband else "Stopped"
    return "Stopped" if record.status == "Stopped" else "Failed"


class TuningRuns:
    """The parent run of one tuning job; see :func:`open_tuning_runs`."""

    def __init__(self, client: Any, experiment_id: str, parent: tracking.ParentRun, tuning):
        self._client, self._experiment = client, experiment_id
        self.parent, self.run_id = parent, parent.run_id  # what the engine gets per trial
        self._tuning: TuningConfig = tuning

    def children(self) -> list[Any]:
        """The trials' runs (every one under this parent)."""
        return self._client.search_runs(
            [self._experiment], filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}'"
        )

    def _child(self, name: str) -> Any | None:
        return next((r for r in self.children() if r.info.run_name == name), None)

    def trial_done(self, record: TrialRecord) -> None:
        """Tag the trial's run with its AMT status and objective."""
        from mlflow.entities import Metric, RunTag

        child = self._child(record.name)
        status = trial_status(record, hyperband=self._tuning.hyperband is not None)
        if child is not None:
            tags = [RunTag(STATUS_TAG, status)]
            if status == "Failed" and record.failure_reason:
                tags.append(RunTag(tracking.TAG_PREFIX + "failure_reason", record.failure_reason))
            metrics = []
            if record.objective is not None:
                metrics.append(Metric("objective", record.objective, _now_ms(), 0))
            self._client.log_batch(child.info.run_id, metrics=metrics, tags=tags)
        if record.objective is not None and status == "Completed":
            self._client.log_metric(self.run_id, "objective", record.objective, step=record.index)

    def mark_interrupted(self, finished: set[str]) -> None:
        """Runs of trials that did not finish (a killed or interrupted run's): ended, tagged."""
        for run in self.children():
            if run.info.run_name not in finished and STATUS_TAG not in run.data.tags:
                self._client.set_tag(run.info.run_id, STATUS_TAG, "Interrupted")
                if run.info.status == "RUNNING":
                    self._client.set_terminated(run.info.run_id, "KILLED")

    def finish(self, best: TrialRecord | None, status: str) -> None:
        """The best trial named on parent and child; the parent ended."""
        if best is not None:
            self._client.set_tag(self.run_id, BEST_TRIAL_TAG, best.name)
            if best.objective is not None:
                self._client.log_metric(self.run_id, "best_objective", best.objective)
            child = self._child(best.name)
            if child is not None:
                self._client.set_tag(child.info.run_id, BEST_TAG, "true")
                self._client.set_tag(self.run_id, "sm-toolkit.best_run_id", child.info.run_id)
        self._client.set_tag(self.run_id, tracking.TAG_PREFIX + "status", status)
        self._client.set_terminated(self.run_id, "FINISHED" if status == "Completed" else "KILLED")

    def interrupted(self) -> None:
        self._client.set_terminated(self.run_id, "KILLED")


def safely(action, *args: Any, log=print) -> None:
    """One tracking step; a store error is one line, never the tuning job's failure."""
    try:
        action(*args)
    except Exception as err:  # noqa: BLE001
        log(f"[tune] tracking: {type(err).__name__}: {err}"[:300])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def open_tuning_runs(
    request: Mapping[str, Any], tuning: TuningConfig, workdir: Path, study: Any, *, resume: bool
) -> TuningRuns | None:
    """The tuning job's parent run (a resume continues the study's), in the store and
    experiment its trials log to: the TrainingJobDefinition's Environment, else the
    workdir's embedded store (the same one ``run --local`` uses, so ``sm-toolkit ui`` shows
    both). None when mlflow is not installed."""
    environment = dict(request["TrainingJobDefinition"].get("Environment") or {})
    target = tracking.target_for(environment, workdir)
    try:
        client, experiment_id = tracking.client_for(target)
    except ImportError:
        return None
    run_id = study.user_attrs.get(PARENT_ATTR) if resume else None
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(
            experiment_id, run_name=tuning.job_name, tags=_parent_tags(request, tuning)
        ).info.run_id
        client.log_batch(run_id, params=_parent_params(request, tuning))
        study.set_user_attr(PARENT_ATTR, run_id)
    return TuningRuns(client, experiment_id, tracking.ParentRun(run_id, target), tuning)


def _parent_tags(request: Mapping[str, Any], tuning: TuningConfig) -> dict[str, str]:
    definition = request["TrainingJobDefinition"]
    return {
        TUNING_JOB_TAG: tuning.job_name,
        tracking.TAG_PREFIX + "strategy": tuning.strategy,
        tracking.TAG_PREFIX + "objective": f"{tuning.objective.type} {tuning.objective.metric}",
        tracking.TAG_PREFIX + "image": definition["AlgorithmSpecification"].get(
            "TrainingImage", ""
        ),
        "sm-toolkit.backend": "local",
    }


def _parent_params(request: Mapping[str, Any], tuning: TuningConfig) -> list[Any]:
    from mlflow.entities import Param

    config = request["HyperParameterTuningJobConfig"]
    values = {
        "strategy": tuning.strategy,
        "objective_metric": tuning.objective.metric,
        "objective_type": tuning.objective.type,
        "max_jobs": str(tuning.max_jobs),
        "max_parallel_jobs": str(tuning.max_parallel_jobs),
        "early_stopping": tuning.early_stopping,
        "parameter_ranges": json.dumps(config.get("ParameterRanges", {}), sort_keys=True),
    }
    static, _ = contract.split_hyperparameters(
        dict(request["TrainingJobDefinition"].get("StaticHyperParameters") or {})
    )
    values.update({f"static.{k}": v for k, v in static.items()})
    return [Param(k, v[:6000]) for k, v in values.items()]
