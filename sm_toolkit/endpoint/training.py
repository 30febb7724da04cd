"""The training-job operations, served by the local engine.

Create starts an engine job in the background and records it; Describe returns the live
document while the job runs and the stored one after; Stop and the server's shutdown stop it
as StopTrainingJob does. Every document is kept in the shape DescribeTrainingJob returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sm_toolkit.endpoint.cloudwatch import JobTelemetry
from sm_toolkit.endpoint.errors import ResourceInUse, ResourceNotFound, ValidationError
from sm_toolkit.endpoint.listing import filter_documents, paginate, sort_documents
from sm_toolkit.endpoint.shapes import conform_output
from sm_toolkit.endpoint.store import Store
from sm_toolkit.errors import ToolkitError

# A job with this tag is interrupted (a simulated spot reclaim) once its script has run this
# many seconds; the engine does it only for EnableManagedSpotTraining jobs, as AWS would.
INTERRUPT_TAG = "sm-toolkit:interrupt-after-seconds"
_ENDED = ("Completed", "Failed", "Stopped")


class Caller:
    """Who sent the request: the account and region its SigV4 signature names."""

    def __init__(self, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.region = region
        self.account = account

    def arn(self, kind: str, name: str) -> str:
        """A SageMaker ARN (the service lowercases the name in it)."""
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"


def engine_job_factory() -> Callable[..., Any]:
    """The engine's TrainingJob class (imported late: the engine pulls in torch-free but
    heavy local modules that the validation path does not need)."""
    from sm_toolkit.local.engine import TrainingJob

    return TrainingJob


def _events(**callbacks: Callable) -> Any:
    from sm_toolkit.local.engine import JobEvents

    return JobEvents(**callbacks)


class TrainingJobs:
    """Training jobs of one endpoint: live engine jobs plus the store's records."""

    def __init__(
        self,
        store: Store,
        *,
        workdir: Path,
        backend: str = "process",
        image: str | None = None,
        job_factory: Callable[..., Any] | None = None,
        events_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.store = store
        self.workdir = workdir
        self.backend = backend
        self.image = image
        self._factory = job_factory  # the engine's TrainingJob unless a test gives one
        self._events = events_factory or _events
        self._live: dict[str, Any] = {}
        self._lock = threading.Lock()
        # A status change reported from another thread (a stop's "Stopping") must not land
        # after the final document: writes of a job's document are serialized, and none
        # follows the final one.
        self._write_lock = threading.Lock()
        self._final: set[str] = set()
        self.closing = False  # the server is stopping: no new jobs

    def create(
        self,
        request: dict,
        caller: Caller,
        *,
        tuning_job: str | None = None,
        done: Callable[[dict], None] | None = None,
        on_line: Callable[[str], None] | None = None,
        workdir: Path | None = None,
        tracking_parent: Any = None,
    ) -> dict:
        """CreateTrainingJob: start the job through the engine and record it.

        ``tuning_job`` marks a tuning trial; ``done`` gets the final document, ``on_line``
        every log line, ``workdir`` replaces the endpoint's (a tuning job's trials live
        under the tuning job's folder), ``tracking_parent`` the tuning job's MLflow run.
        """
        name = request["TrainingJobName"]
        arn = caller.arn("training-job", name)
        if self.closing:
            raise ValidationError("The endpoint is shutting down; it takes no new jobs")
        with self._lock:  # the name check and the insert are one step
            if self.store.training(name) is not None:
                raise ResourceInUse(f"Training job {arn} already exists")
            job = self._engine_job(
                request, caller, arn, on_line, workdir or self.workdir, tracking_parent
            )
            _start(job, arn)
            self.store.add_training(
                name,
                arn,
                request,
                self._document(job.describe(), arn, request),
                tuning_job=tuning_job,
                # the engine's documented place for a job's final document
                engine_record=str(
                    Path(workdir or self.workdir).resolve() / "jobs" / name / "describe.json"
                ),
            )
            self.store.add_tags(arn, request.get("Tags", []))
            self._live[name] = job
        threading.Thread(
            target=self._watch, args=(name, job, arn, done), daemon=True, name=f"watch-{name}"
        ).start()
        return {"TrainingJobArn": arn}

    def _engine_job(
        self,
        request: dict,
        caller: Caller,
        arn: str,
        on_line: Callable[[str], None] | None,
        workdir: Path,
        tracking_parent: Any = None,
    ) -> Any:
        from sm_toolkit.local.metrics import tag_line

        name = request["TrainingJobName"]
        telemetry = JobTelemetry(name, caller.region, caller.account)
        several = int((request.get("ResourceConfig") or {}).get("InstanceCount", 1)) > 1

        def line(host: str, text: str) -> None:
            telemetry.on_line(host, text)
            if on_line is not None:  # a tuning trial's objective watcher
                on_line(tag_line(host, text, several_hosts=several))

        events = self._events(
            on_line=line,
            on_metric=telemetry.on_metric,
            on_status=lambda doc: self._status(name, self._document(doc, arn, request)),
        )
        try:
            factory = self._factory or engine_job_factory()
            return factory(
                request,
                workdir=workdir,
                backend=self.backend,
                image=self.image,
                events=events,
                interrupt_after=_interrupt_after(request),
                tracking_parent=tracking_parent,
            )
        except ToolkitError as exc:  # the engine refuses what it cannot run: one line
            raise ValidationError(str(exc)) from None

    def _status(self, name: str, doc: dict) -> None:
        with self._write_lock:
            if name not in self._final:
                self.store.set_training(name, doc)

    def _watch(self, name: str, job: Any, arn: str, done: Callable[[dict], None] | None):
        final = self._document(job.wait(), arn)
        with self._write_lock:
            self.store.set_training(name, final)
            self._final.add(name)
        with self._lock:
            self._live.pop(name, None)
        if done is not None:
            done(final)

    def _document(self, doc: dict, arn: str, request: dict | None = None) -> dict:
        request = request or self.store.training_request(doc["TrainingJobName"]) or {}
        return complete_document(doc, request, arn)

    def describe(self, name: str) -> dict:
        """DescribeTrainingJob."""
        job = self._live.get(name)
        if job is not None:
            return self._document(job.describe(), self._arn(name))
        doc = self.store.training(name)
        if doc is None:
            raise ResourceNotFound("Requested resource not found.")
        if _pool_may_change(doc):
            doc = self._refresh(name, doc)
        return doc

    def _refresh(self, name: str, doc: dict) -> dict:
        """An ended job's document as the engine has it now (its warm pool may have been
        reused by a later job, or ended)."""
        path = self.store.engine_record(name)
        if not path or not Path(path).is_file():
            return doc
        from sm_toolkit.local import record

        fresh = self._document(record.load(Path(path)), doc["TrainingJobArn"])
        if fresh != doc:
            self.store.set_training(name, fresh)
        return fresh

    def _arn(self, name: str) -> str:
        doc = self.store.training(name)
        return doc["TrainingJobArn"] if doc else ""

    def documents(self, tuning_job: str | None = None) -> list[dict]:
        """Every job's current document (live ones fresh from the engine)."""
        docs = self.store.trainings(tuning_job)
        return [
            self.describe(d["TrainingJobName"])
            if d["TrainingJobName"] in self._live or _pool_may_change(d)
            else d
            for d in docs
        ]

    def list(self, params: dict) -> dict:
        """ListTrainingJobs: filters, SortBy (CreationTime by default), pagination."""
        docs = filter_documents(
            self.documents(), params, name_key="TrainingJobName", status_key="TrainingJobStatus"
        )
        docs = sort_documents(
            docs,
            params,
            default="CreationTime",
            keys={
                "Name": "TrainingJobName",
                "CreationTime": "CreationTime",
                "Status": "TrainingJobStatus",
            },
        )
        return paginate(docs, params, list_key="TrainingJobSummaries")

    def stop(self, name: str) -> dict:
        """StopTrainingJob: the engine sends SIGTERM, then SIGKILL after the grace period."""
        job = self._live.get(name)
        # A job stays live until the engine has also closed its MLflow run; its status is
        # final before that.
        if job is None or job.describe()["TrainingJobStatus"] in _ENDED:
            doc = self.describe(name)  # ResourceNotFound for an unknown name
            raise ValidationError(
                f"The request was rejected because the training job is in "
                f"status {doc['TrainingJobStatus']}."
            )
        job.stop()
        return {}

    def update(self, name: str, params: dict) -> dict:
        """UpdateTrainingJob: only the warm pool's keep-alive period changes anything
        locally; profiler and remote-debug settings are accepted and ignored."""
        doc = self.describe(name)
        keep_alive = (params.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
        if keep_alive is not None:
            from sm_toolkit.local.engine import update_training_job

            if doc["TrainingJobStatus"] not in _ENDED:
                raise ValidationError(
                    "The warm pool of a job can be changed once the job has "
                    "ended; this one is " + doc["TrainingJobStatus"]
                )
            try:
                new = update_training_job(
                    self._engine_workdir(name), name, keep_alive, backend=self.backend
                )
            except ToolkitError as exc:
                raise ValidationError(str(exc)) from None
            self.store.set_training(name, self._document(new, doc["TrainingJobArn"]))
        return {"TrainingJobArn": doc["TrainingJobArn"]}

    def _engine_workdir(self, name: str) -> Path:
        # <workdir>/jobs/<name>/describe.json: a tuning trial's workdir is its tuning job's
        record = self.store.engine_record(name)
        return Path(record).parents[2] if record else self.workdir

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every running job as StopTrainingJob would and wait for their records."""
        with self._lock:
            jobs = dict(self._live)
        for job in jobs.values():
            job.stop()
        deadline = time.monotonic() + timeout
        for name, job in jobs.items():
            final = job.wait(timeout=max(0.0, deadline - time.monotonic()))
            self.store.set_training(name, self._document(final, self._arn(name)))


def _pool_may_change(doc: dict) -> bool:
    pool = (doc.get("WarmPoolStatus") or {}).get("Status")
    return doc.get("TrainingJobStatus") in _ENDED and pool in ("Available", "InUse")


def _start(job: Any, arn: str) -> None:
    try:
        job.start()
    except ToolkitError as exc:
        # The engine claims the name in its workdir: a job there (say, from `run --local`
        # with the same --workdir) holds it, which SageMaker calls ResourceInUse.
        if getattr(exc, "field", None) == "TrainingJobName":
            raise ResourceInUse(f"Training job {arn} already exists: {exc}") from None
        raise ValidationError(str(exc)) from None


def complete_document(doc: dict, request: dict, arn: str) -> dict:
    """The engine's document as DescribeTrainingJob returns it: this endpoint's ARN (tags
    and tuning summaries use it) and every member the output shape requires."""
    name = request.get("TrainingJobName", doc.get("TrainingJobName"))
    output = (request.get("OutputDataConfig") or {}).get("S3OutputPath", "").rstrip("/")
    filled = {
        **{
            k: request[k]
            for k in ("AlgorithmSpecification", "ResourceConfig", "StoppingCondition", "RoleArn")
            if k in request
        },
        **{k: v for k, v in doc.items() if v is not None},
        "TrainingJobArn": arn,
    }
    if not (doc.get("ModelArtifacts") or {}).get("S3ModelArtifacts"):
        # Where the job will put its model (an empty string would break the member's pattern).
        filled["ModelArtifacts"] = {"S3ModelArtifacts": f"{output}/{name}/output/model.tar.gz"}
    if filled.get("SecondaryStatusTransitions"):
        filled["SecondaryStatusTransitions"] = [
            # The SDK's log printer reads StatusMessage of every transition, as AWS sends one.
            {"StatusMessage": _STATUS_MESSAGES.get(t.get("Status"), t.get("Status", "")), **t}
            for t in filled["SecondaryStatusTransitions"]
        ]
    return conform_output("DescribeTrainingJob", filled)


_STATUS_MESSAGES = {
    "Starting": "Starting the training job",
    "Downloading": "Downloading input data",
    "Training": "Training in progress",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "Interrupted": "The spot instance was interrupted",
    "Restarting": "Restarting the training job on new instances",
    "MaxRuntimeExceeded": "Training job stopped: MaxRuntimeInSeconds exceeded",
}


def _interrupt_after(request: dict) -> float | None:
    for tag in request.get("Tags", []):
        if tag.get("Key") == INTERRUPT_TAG:
            try:
                return float(tag.get("Value", ""))
            except ValueError:
                raise ValidationError(
                    f"Tag {INTERRUPT_TAG}: {tag.get('Value')!r} is not a number of seconds"
                ) from None
    return None
