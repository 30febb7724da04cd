"""Test adapter: run a spec through the local engine the way `run SPEC --local` does
(render -> local request -> engine) and expose what the assertions look at."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_toolkit.aws.local_request import local_training_request
from sm_toolkit.local.engine import JobEvents, TrainingJob
from sm_toolkit.local.metrics import tag_line
from sm_toolkit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
USERSCRIPT = ROOT / "tests" / "fixtures" / "userscript"


def assert_valid_describe(doc: dict[str, Any]) -> None:
    """The document conforms to botocore's DescribeTrainingJob output shape."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DescribeTrainingJob").output_shape
    report = ParamValidator().validate(doc, shape)
    assert not report.has_errors(), report.generate_report()
    statuses = model.shape_for("SecondaryStatus").enum
    assert all(t["Status"] in statuses for t in doc["SecondaryStatusTransitions"])


@dataclass
class Ran:
    doc: dict[str, Any]
    job: TrainingJob

    @property
    def status(self) -> str:
        return self.doc["TrainingJobStatus"]

    @property
    def failure_reason(self) -> str | None:
        return self.doc.get("FailureReason")

    @property
    def final_metrics(self) -> dict[str, float]:
        return {m["MetricName"]: m["Value"] for m in self.doc.get("FinalMetricDataList", [])}

    @property
    def metric_series(self) -> dict[str, list[float]]:
        return self.job.metric_series

    @property
    def model_artifacts(self) -> str | None:
        return self.doc["ModelArtifacts"]["S3ModelArtifacts"] or None

    @property
    def output_artifacts(self) -> str:
        return self.model_artifacts.replace("model.tar.gz", "output.tar.gz")

    @property
    def interruptions(self) -> int:
        return sum(t["Status"] == "Interrupted" for t in self.doc["SecondaryStatusTransitions"])

    @property
    def warm_pool(self) -> str | None:
        return (self.doc.get("WarmPoolStatus") or {}).get("Status")

    @property
    def log_path(self) -> Path:
        return self.job.job_dir / "algo-1.log"

    @property
    def base_dir(self) -> Path:
        """The leader's /opt/ml of the last attempt."""
        attempts = sorted(self.job.job_dir.glob("attempt-*"), key=lambda p: int(p.name[8:]))
        return attempts[-1] / "algo-1" / "opt" / "ml"


def run_spec(
    spec,
    *,
    job_name: str,
    workdir: Path,
    hyperparameters: dict | None = None,
    on_line=None,
    stop_event: threading.Event | None = None,
    interrupt_after: float | None = None,
    interrupt_event: threading.Event | None = None,
    backend: str = "process",
    image: str | None = None,
) -> Ran:
    request = local_training_request(spec, job_name, hyperparameters)
    events = JobEvents(
        on_line=None
        if on_line is None
        else (
            lambda host, text: on_line(tag_line(host, text, several_hosts=spec.instance.count > 1))
        )
    )
    job = TrainingJob(
        request,
        workdir=workdir,
        backend=backend,
        image=image,
        events=events,
        interrupt_after=interrupt_after,
    ).start()
    while not job._done.wait(0.2):
        if interrupt_event is not None and interrupt_event.is_set():
            job.interrupt()
        if stop_event is not None and stop_event.is_set():
            job.stop()
            break
    return Ran(job.wait(), job)


def user_spec(bucket: str, **extra) -> object:
    """A user's own job spec: tests/fixtures/userscript/train.py, SDK-style metrics; ``extra``
    replaces or adds top-level fields."""
    data = {
        "name": "user-job",
        "entry_point": "train.py",
        "source_dir": str(USERSCRIPT),
        "hyperparameters": {"epochs": 3, "scale": 2.0},
        "image_uri": "sm-toolkit:latest",
        "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
        "instance": {"type": "ml.c5.xlarge"},
        "output_path": f"s3://{bucket}/output",
        "metrics": [
            {"name": "train:loss", "regex": r"train:loss=([0-9.]+)"},
            {"name": "previous_runs", "regex": r"previous_runs=([0-9]+)"},
        ],
        **extra,
    }
    return parse_spec(data, base_dir=ROOT)
