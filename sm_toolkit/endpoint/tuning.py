"""The tuning-job operations, served by the local tuner.

CreateHyperParameterTuningJob runs ``sm_toolkit.local.tuning.run_local_tuning`` in a thread;
its trials are training jobs of this endpoint (so ListTrainingJobs, DescribeTrainingJob and
ListTrainingJobsForHyperParameterTuningJob show them). The tuning job's document is derived
from its request and its trials' documents whenever it is asked for.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from sm_toolkit.endpoint.errors import ResourceInUse, ResourceNotFound, ValidationError
from sm_toolkit.endpoint.listing import filter_documents, paginate, sort_documents
from sm_toolkit.endpoint.shapes import conform_output
from sm_toolkit.endpoint.training import Caller, TrainingJobs
from sm_toolkit.errors import ToolkitError

_RUNNING = ("InProgress", "Stopping")


def _local_tuner() -> Any:
    from sm_toolkit.local.tuning import run_local_tuning

    return run_local_tuning


def _check_with_tuner(request: dict) -> None:
    """Refuse at once what the local tuner would refuse (not as a Failed job later)."""
    from sm_toolkit.local.tuning.request import read_tuning_request

    try:
        read_tuning_request(request)
    except ToolkitError as exc:
        raise ValidationError(str(exc)) from None


class TuningJobs:
    """Tuning jobs of one endpoint, each a local tuner running in its own thread."""

    def __init__(self, trainings: TrainingJobs, tuner: Any = None) -> None:
        self.trainings = trainings
        self.store = trainings.store
        self._tuner = tuner
        self._stopping: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def create(self, request: dict, caller: Caller) -> dict:
        """CreateHyperParameterTuningJob: start the local tuner on the request."""
        name = request["HyperParameterTuningJobName"]
        arn = caller.arn("hyper-parameter-tuning-job", name)
        tuner = self._tuner or _local_tuner()
        _check_with_tuner(request)
        now = time.time()
        with self._lock:
            if self.store.tuning(name) is not None:
                raise ResourceInUse(f"Hyperparameter tuning job {arn} already exists")
            doc = {
                **request,
                "HyperParameterTuningJobArn": arn,
                "HyperParameterTuningJobStatus": "InProgress",
                "CreationTime": now,
                "LastModifiedTime": now,
            }
            self.store.add_tuning(name, arn, request, doc)
            self.store.add_tags(arn, request.get("Tags", []))
            stop = self._stopping[name] = threading.Event()
            thread = threading.Thread(
                target=self._run,
                args=(tuner, request, caller, stop),
                name=f"tune-{name}",
                daemon=True,
            )
            self._threads[name] = thread
        thread.start()
        return {"HyperParameterTuningJobArn": arn}

    def _run(self, tuner: Any, request: dict, caller: Caller, stop: threading.Event) -> None:
        name = request["HyperParameterTuningJobName"]
        status, reason = "Completed", None
        try:
            result = tuner(
                request,
                workdir=Path(self.trainings.workdir),
                run_job=self._run_job(name, caller, stop),
                log=lambda line: print(line, flush=True),
                tracking=True,  # a parent run, each trial's run its child, as tune --local
            )
            status = "Stopped" if stop.is_set() or result.status == "Stopped" else "Completed"
        except Exception as exc:  # the tuner's failure is the tuning job's FailureReason
            traceback.print_exc()
            status, reason = "Failed", f"{type(exc).__name__}: {exc}"[:1024]
        doc = self.store.tuning(name) or {}
        now = time.time()
        doc.update(
            HyperParameterTuningJobStatus=status,
            HyperParameterTuningEndTime=now,
            LastModifiedTime=now,
        )
        if reason:
            doc["FailureReason"] = reason
        self.store.set_tuning(name, doc)

    def _run_job(self, tuning_name: str, caller: Caller, stopped: threading.Event):
        """The tuner's run_job: one trial as a training job of this endpoint."""

        def run_job(
            request: dict, *, workdir: Path, on_line=None, stop_event=None, tracking_parent=None
        ) -> dict:
            if stopped.is_set():  # no new trials once the tuning job is stopping
                return {
                    "TrainingJobName": request["TrainingJobName"],
                    "TrainingJobStatus": "Stopped",
                }
            ended = threading.Event()
            final: dict[str, Any] = {}
            self.trainings.create(
                request,
                caller,
                tuning_job=tuning_name,
                on_line=on_line,
                workdir=Path(workdir),
                done=lambda doc: (final.update(doc), ended.set()),
                tracking_parent=tracking_parent,
            )
            while not ended.wait(0.2):
                if (stop_event is not None and stop_event.is_set()) or stopped.is_set():
                    self._stop_trial(request["TrainingJobName"])
            return final

        return run_job

    def _stop_trial(self, name: str) -> None:
        try:
            self.trainings.stop(name)
        except ValidationError:  # it ended meanwhile
            pass

    def describe(self, name: str) -> dict:
        """DescribeHyperParameterTuningJob, with counters and the best trial."""
        doc = self.store.tuning(name)
        if doc is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job named {name}")
        trials = self.trial_summaries(name, doc)
        doc = {**doc, **counters(trials)}
        best = best_trial(trials, doc)
        if best is not None:
            doc["BestTrainingJob"] = best
        return conform_output("DescribeHyperParameterTuningJob", doc)

    def trial_summaries(self, name: str, doc: dict | None = None) -> list[dict]:
        """Each trial as a HyperParameterTrainingJobSummary."""
        doc = doc or self.store.tuning(name)
        objective = doc["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
        tuned = _tuned_names(doc)
        return [
            trial_summary(t, name, objective, tuned)
            for t in self.trainings.documents(tuning_job=name)
        ]

    def list(self, params: dict) -> dict:
        """ListHyperParameterTuningJobs (sorted by Name unless told otherwise)."""
        docs = [self.describe(d["HyperParameterTuningJobName"]) for d in self.store.tunings()]
        docs = filter_documents(
            docs,
            params,
            name_key="HyperParameterTuningJobName",
            status_key="HyperParameterTuningJobStatus",
        )
        docs = sort_documents(
            docs,
            params,
            default="Name",
            keys={
                "Name": "HyperParameterTuningJobName",
                "Status": "HyperParameterTuningJobStatus",
                "CreationTime": "CreationTime",
            },
        )
        for d in docs:
            d["Strategy"] = d["HyperParameterTuningJobConfig"]["Strategy"]
            d["ResourceLimits"] = d["HyperParameterTuningJobConfig"]["ResourceLimits"]
        return paginate(docs, params, list_key="HyperParameterTuningJobSummaries")

    def list_trials(self, params: dict) -> dict:
        """ListTrainingJobsForHyperParameterTuningJob."""
        name = params["HyperParameterTuningJobName"]
        if self.store.tuning(name) is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job named {name}")
        trials = self.trial_summaries(name)
        trials = filter_documents(
            trials, params, name_key="TrainingJobName", status_key="TrainingJobStatus"
        )
        by = params.get("SortBy", "Name")
        if by == "FinalObjectiveMetricValue":  # the service leaves out trials without one
            trials = [t for t in trials if "FinalHyperParameterTuningJobObjectiveMetric" in t]
        trials = sort_documents(
            trials,
            params,
            default="Name",
            keys={
                "Name": "TrainingJobName",
                "CreationTime": "CreationTime",
                "Status": "TrainingJobStatus",
                "FinalObjectiveMetricValue": lambda t: (
                    t.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
                ).get("Value"),
            },
        )
        return paginate(trials, params, list_key="TrainingJobSummaries")

    def stop(self, name: str) -> dict:
        """StopHyperParameterTuningJob: no new trials; running ones are stopped."""
        doc = self.store.tuning(name)
        if doc is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job named {name}")
        if doc["HyperParameterTuningJobStatus"] not in _RUNNING:
            raise ValidationError(
                f"The request was rejected because the tuning job is in "
                f"status {doc['HyperParameterTuningJobStatus']}."
            )
        self.store.set_tuning(
            name,
            {**doc, "HyperParameterTuningJobStatus": "Stopping", "LastModifiedTime": time.time()},
        )
        self._stopping[name].set()
        return {}

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every running tuning job and wait for its thread."""
        for event in self._stopping.values():
            event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _tuned_names(doc: dict) -> set[str]:
    ranges = doc["HyperParameterTuningJobConfig"].get("ParameterRanges") or {}
    return {r["Name"] for kind in ranges.values() for r in kind}


def trial_summary(trial: dict, tuning_name: str, objective: dict, tuned: set[str]) -> dict:
    """A trial's DescribeTrainingJob document as a HyperParameterTrainingJobSummary."""
    status = trial.get("TrainingJobStatus", "InProgress")
    summary = {
        **trial,
        "TuningJobName": tuning_name,
        "TunedHyperParameters": {
            k: v for k, v in (trial.get("HyperParameters") or {}).items() if k in tuned
        },
    }
    finals = {m["MetricName"]: m["Value"] for m in trial.get("FinalMetricDataList") or []}
    if objective["MetricName"] in finals:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": objective["Type"],
            "MetricName": objective["MetricName"],
            "Value": finals[objective["MetricName"]],
        }
        summary["ObjectiveStatus"] = "Succeeded"
    else:
        summary["ObjectiveStatus"] = "Pending" if status in _RUNNING else "Failed"
    return conform_output(
        "ListTrainingJobsForHyperParameterTuningJob", {"TrainingJobSummaries": [summary]}
    )["TrainingJobSummaries"][0]


def counters(trials: list[dict]) -> dict:
    """TrainingJobStatusCounters and ObjectiveStatusCounters of a tuning job."""
    status = Counter(t["TrainingJobStatus"] for t in trials)
    objective = Counter(t.get("ObjectiveStatus", "Pending") for t in trials)
    return {
        "TrainingJobStatusCounters": {
            "Completed": status["Completed"],
            "InProgress": status["InProgress"] + status["Stopping"],
            "RetryableError": 0,
            "NonRetryableError": status["Failed"],
            "Stopped": status["Stopped"],
        },
        "ObjectiveStatusCounters": {k: objective[k] for k in ("Succeeded", "Pending", "Failed")},
    }


def best_trial(trials: list[dict], doc: dict) -> dict | None:
    """The Completed trial with the best objective value, as the service picks it."""
    objective = doc["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    scored = [
        t
        for t in trials
        if t["TrainingJobStatus"] == "Completed"
        and "FinalHyperParameterTuningJobObjectiveMetric" in t
    ]
    if not scored:
        return None
    pick = max if objective["Type"] == "Maximize" else min
    return pick(scored, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
