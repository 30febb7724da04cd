"""The record of a local training job, and its DescribeTrainingJob document.

Statuses, secondary statuses and their transitions follow SageMaker: InProgress (Starting,
Downloading, Training, Interrupted, Restarting, Uploading), then Completed, Failed or
Stopped (Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded). ``document()`` conforms to
botocore's DescribeTrainingJob output shape (tested).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from sm_toolkit.local.plan import JobPlan

MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Interrupted": "The spot instances were interrupted",
    "Restarting": "Restarting the job on fresh instances",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "The job was stopped",
    "MaxRuntimeExceeded": "The job stopped because it exceeded MaxRuntimeInSeconds",
    "MaxWaitTimeExceeded": "The job stopped because it exceeded MaxWaitTimeInSeconds",
}
# Copied from the request into the document as they are.
ECHOED = (
    "HyperParameters",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "VpcConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "DebugHookConfig",
    "DebugRuleConfigurations",
    "TensorBoardOutputConfig",
    "ProfilerConfig",
    "Environment",
    "RetryStrategy",
    "ExperimentConfig",
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobRecord:
    """Thread-safe state of one job; ``on_change`` gets the document after each change."""

    def __init__(self, plan: JobPlan, on_change=None) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._on_change = on_change
        created = now()
        self.status = "InProgress"
        self.secondary = "Starting"
        self.transitions: list[dict[str, Any]] = [
            {"Status": "Starting", "StartTime": created, "StatusMessage": MESSAGES["Starting"]}
        ]
        self.created = created
        self.modified = created
        self.training_start: dt.datetime | None = None
        self.training_end: dt.datetime | None = None
        self.billable_seconds = 0.0
        self.failure_reason: str | None = None
        self.final_metrics: dict[str, tuple[float, float]] = {}  # name -> (value, unix time)
        self.model_artifacts: str | None = None
        self.warm_pool: dict[str, Any] | None = None

    def move(self, secondary: str, message: str | None = None, *, status: str | None = None):
        with self._lock:
            stamp = now()
            if self.transitions and self.transitions[-1]["Status"] == secondary:
                return
            if self.transitions:
                self.transitions[-1]["EndTime"] = stamp
            self.transitions.append(
                {
                    "Status": secondary,
                    "StartTime": stamp,
                    "StatusMessage": message or MESSAGES.get(secondary, secondary),
                }
            )
            self.secondary = secondary
            if status is not None:
                self.status = status
            self.modified = stamp
        self._changed()

    def finish(self, status: str, secondary: str, reason: str | None = None) -> None:
        self.failure_reason = reason
        self.move(secondary, reason.splitlines()[0][:200] if reason else None, status=status)
        with self._lock:
            self.transitions[-1]["EndTime"] = self.transitions[-1]["StartTime"]

    def metric(self, name: str, value: float, at: float) -> None:
        self.final_metrics[name] = (value, at)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.document())

    def document(self) -> dict[str, Any]:
        """The DescribeTrainingJob response of this job, now."""
        plan = self.plan
        with self._lock:
            algo = {
                k: v
                for k, v in plan.request["AlgorithmSpecification"].items()
                if k != "ContainerEntrypoint" or v
            }
            doc: dict[str, Any] = {
                "TrainingJobName": plan.name,
                "TrainingJobArn": plan.arn,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary,
                "AlgorithmSpecification": algo,
                "ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts or ""},
                "CreationTime": self.created,
                "LastModifiedTime": self.modified,
                "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            }
            for key in ECHOED:
                if key in plan.request:
                    doc[key] = plan.request[key]
            if self.failure_reason:
                doc["FailureReason"] = self.failure_reason
            if self.training_start is not None:
                doc["TrainingStartTime"] = self.training_start
            if self.training_end is not None:
                doc["TrainingEndTime"] = self.training_end
                span = (self.training_end - self.training_start).total_seconds()
                doc["TrainingTimeInSeconds"] = max(1, round(span))
                doc["BillableTimeInSeconds"] = max(1, round(self.billable_seconds))
            if self.final_metrics:
                doc["FinalMetricDataList"] = [
                    {
                        "MetricName": name,
                        "Value": value,
                        "Timestamp": dt.datetime.fromtimestamp(at, dt.timezone.utc),
                    }
                    for name, (value, at) in sorted(self.final_metrics.items())
                ]
            if self.warm_pool is not None:
                doc["WarmPoolStatus"] = dict(self.warm_pool)
            return doc


def to_json(doc: dict[str, Any]) -> str:
    """The document as the AWS CLI prints it (timestamps as ISO 8601)."""
    return json.dumps(doc, indent=2, default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save(doc: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_json(doc))
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    """A saved document, timestamps parsed back into datetimes."""
    doc = json.loads(path.read_text())
    for key in ("CreationTime", "LastModifiedTime", "TrainingStartTime", "TrainingEndTime"):
        if key in doc:
            doc[key] = dt.datetime.fromisoformat(doc[key])
    for t in doc.get("SecondaryStatusTransitions", []):
        for key in ("StartTime", "EndTime"):
            if key in t:
                t[key] = dt.datetime.fromisoformat(t[key])
    for m in doc.get("FinalMetricDataList", []):
        m["Timestamp"] = dt.datetime.fromisoformat(m["Timestamp"])
    return doc
