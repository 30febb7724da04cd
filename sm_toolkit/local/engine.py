"""The local engine: one CreateTrainingJob request run on this machine, as SageMaker runs it.

request -> plan (``plan.py``) -> this loop -> a backend (process or docker) that starts hosts.
The loop is the same for every backend: claim the job name, take a matching warm pool, stage
code, channels and checkpoints, start the hosts, watch them (log lines and metrics, stop,
MaxRuntimeInSeconds, MaxWaitTimeInSeconds, simulated spot reclaims, a host that ended), sync
checkpoints, upload artifacts, and leave the DescribeTrainingJob document in
``<workdir>/jobs/<name>/describe.json``.

    from sm_toolkit.local.engine import run_training_job
    doc = run_training_job(request)   # the request dict boto3's create_training_job takes
    doc["TrainingJobStatus"]          # Completed | Failed | Stopped
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError, ToolkitError
from sm_toolkit.local import record, tracking, warm_pool
from sm_toolkit.local.artifacts import upload
from sm_toolkit.local.backends import get_backend
from sm_toolkit.local.checkpoints import CheckpointSync
from sm_toolkit.local.hosts import Host, job_hyperparameters
from sm_toolkit.local.metrics import MetricParser, tag_line
from sm_toolkit.local.plan import plan_from_request
from sm_toolkit.local.s3 import S3
from sm_toolkit.local.staging import stage_channels, stage_code

SCRIPT_STARTED = "Invoking script with the following command"  # sagemaker-training's log
DEFAULT_WORKDIR = Path(".sm-toolkit")


@dataclass
class JobEvents:
    """Callbacks, all optional, called from the engine's threads."""

    on_line: Callable[[str, str], None] | None = None  # (host, line)
    on_metric: Callable[[str, float, float], None] | None = None  # (name, value, unix time)
    on_status: Callable[[dict], None] | None = None  # the document after a status change


@dataclass
class _Attempt:
    outcome: str = (
        "completed"  # completed | failed | stopped | max_runtime | max_wait | interrupted
    )
    reason: str | None = None
    hosts: list[Host] = field(default_factory=list)


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class TrainingJob:
    """One local training job. ``start()`` returns at once; ``wait()`` gives the document."""

    def __init__(
        self,
        request: dict[str, Any],
        *,
        workdir: Path | str = DEFAULT_WORKDIR,
        backend: str = "process",
        image: str | None = None,
        events: JobEvents | None = None,
        interrupt_after: float | None = None,
        stop_grace: float = contract.STOP_GRACE_SECONDS,
        tracking_parent: tracking.ParentRun | None = None,
        network: str | None = None,
        workers=None,
    ) -> None:
        self.plan = plan_from_request(request, region=_region())
        self.backend = get_backend(backend, image=image, network=network, workers=workers)
        self.backend.check(self.plan)
        self.name = self.plan.name
        self.workdir = Path(workdir).resolve()
        self.job_dir = self.workdir / "jobs" / self.name
        self.events = events or JobEvents()
        self.interrupt_after = interrupt_after
        self.stop_grace = stop_grace
        self.record = record.JobRecord(self.plan, on_change=self._status_changed)
        self._stop = threading.Event()
        self._reclaim = threading.Event()  # interrupt(): a simulated spot reclaim, now
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._parser = MetricParser(self.plan.metric_definitions)
        self._script_started: float | None = None
        self.notes = list(self.plan.notes)
        self.notes_not_uploaded: list[str] = []
        # Checked now (a bad MLFLOW_TRACKING_URI is the caller's mistake); opened in _run.
        target = tracking.target_for(self.plan.environment, self.workdir)
        if tracking_parent is not None:
            target = tracking_parent.target
        self.tracking = tracking.JobTracking(
            self.plan, target, tracking_parent.run_id if tracking_parent else None
        )

    # -- public ------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        self._claim_name()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.name}", daemon=True)
        self._thread.start()
        return self

    def describe(self) -> dict[str, Any]:
        return self.record.document()

    def stop(self) -> None:
        # Not once the status is final (the job may still be closing its MLflow run).
        if not self._done.is_set() and self.record.status == "InProgress":
            self.record.move("Stopping", status="Stopping")
        self._stop.set()

    def interrupt(self) -> None:
        """A simulated spot reclaim now, as ``interrupt_after`` makes one later: SIGTERM to
        every host, then the job restarts on fresh hosts (once, on the first attempt)."""
        self._reclaim.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        self._done.wait(timeout)
        return self.describe()

    # -- the loop ----------------------------------------------------------------------
    def _claim_name(self) -> None:
        """SageMaker refuses a name in use; so does the engine (atomic: mkdir)."""
        self.job_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.job_dir.mkdir()
        except FileExistsError:
            raise ConfigError(
                "TrainingJobName",
                self.name,
                f"a job of that name exists in {self.job_dir.parent} (SageMaker refuses "
                "duplicate names too); choose another name",
            ) from None

    def _run(self) -> None:
        s3 = S3(self.plan.region)
        pool = attempt = None
        try:
            self._open_tracking()
            pool = self._take_pool()
            attempt = self._attempts(s3, pool)
            self._finish(attempt, s3)
        except ToolkitError as err:
            self.record.finish("Failed", "Failed", str(err)[: contract.FAILURE_REASON_LIMIT])
        except Exception as err:  # noqa: BLE001 - never leave a job InProgress
            tb = traceback.format_exc()
            (self.job_dir / "engine-error.txt").write_text(tb)
            self.record.finish(
                "Failed", "Failed", f"InternalServerError: {type(err).__name__}: {err}"
            )
        finally:
            self._release_pool(pool, attempt)
            record.save(self.describe(), self.job_dir / "describe.json")
            self._close_tracking(attempt)
            self._done.set()

    # -- tracking ----------------------------------------------------------------------
    def _open_tracking(self) -> None:
        """The job's MLflow run; its id (with URI and experiment) goes to the containers."""
        env = self.tracking.open()
        if self.tracking.problem:
            self._line("engine", f"[sm-toolkit] tracking off: {self.tracking.problem}")
        # MLflow's telemetry goes to its own servers: off in local jobs unless the request says.
        opt_out = {contract.MLFLOW_TELEMETRY_OPT_OUT_ENV: "true"}
        merged = {**opt_out, **self.plan.environment, **env}
        self.plan = dataclasses.replace(self.plan, environment=merged)
        self.tracking.plan = self.plan

    def _close_tracking(self, attempt: _Attempt | None) -> None:
        hosts = attempt.hosts if attempt else []
        try:
            outputs = [h.opt_ml / contract.OUTPUT_DATA_DIR for h in hosts]
            self.tracking.close(self.describe(), self.job_dir, outputs)
        except Exception as err:  # noqa: BLE001 - the job's result stands without its run
            self._line("engine", f"[sm-toolkit] tracking: run not completed: {err}"[:300])

    def _attempts(self, s3: S3, pool) -> _Attempt:
        number = 0
        while True:
            attempt = self._attempt(number, s3, pool)
            if attempt.outcome != "interrupted" or self._stop.is_set():
                return attempt
            self.record.move("Interrupted")
            self.record.move("Restarting")
            self._line(
                "engine",
                f"[sm-toolkit] restarting {self.name} on fresh hosts "
                f"(attempt {number + 2}); checkpoints restore from "
                f"{self.plan.checkpoint_s3 or 'nowhere (no CheckpointConfig)'}",
            )
            number += 1

    def _attempt(self, number: int, s3: S3, pool) -> _Attempt:
        plan = self.plan
        hosts = self.backend.layout(plan, self.job_dir, number)
        self.record.move("Downloading")
        stage_code(plan, hosts, s3, self.job_dir / "scratch")
        stage_channels(plan, hosts, s3)
        sync = None
        if plan.checkpoint_s3:
            folders = [h.path(plan.checkpoint_path) for h in hosts]
            sync = CheckpointSync(s3, plan.checkpoint_s3, folders)
            sync.restore()
        self.backend.prepare(plan, hosts, job_hyperparameters(plan))
        if pool is not None:
            self.backend.attach_cache(hosts, pool)
        self.record.move("Training")
        if self.record.training_start is None:
            self.record.training_start = record.now()
        procs = self.backend.start(plan, hosts, self._host_line)
        if sync is not None:
            sync.start()
        started = time.monotonic()
        try:
            attempt = self._watch(procs, number)
        finally:
            self.record.billable_seconds += time.monotonic() - started
            for p in procs:
                p.close()
        attempt.hosts = hosts
        if sync is not None:
            report = sync.stop()
            if report.pending:
                self.notes_not_uploaded.append(
                    f"{len(report.pending)} checkpoint file(s) not uploaded to "
                    f"{plan.checkpoint_s3}: {report.last_error}"
                )
        return attempt

    def _watch(self, procs, number: int) -> _Attempt:
        plan, attempt = self.plan, _Attempt()
        ended: list[tuple[Any, int]] = []
        kill_at: float | None = None
        start = time.monotonic()
        while True:
            kill_at = self._poll(procs, ended, attempt, kill_at)
            if kill_at is None:
                reason = self._should_end(start, number)
                if reason is not None:
                    attempt.outcome = reason
                    kill_at = self._terminate(procs)
            if len(ended) == len(procs):
                if (
                    kill_at is None
                    or not any(p.alive() for p in procs)
                    or time.monotonic() > kill_at
                ):
                    break
            elif kill_at is not None and time.monotonic() > kill_at:
                for p in procs:
                    p.kill()
            time.sleep(0.1)
        for p in procs:  # what outlived the host's main process (orphans, daemons) ends now
            p.kill()
        if attempt.outcome in ("completed", "failed"):
            attempt.outcome, attempt.reason = _outcome(plan, procs, ended)
        return attempt

    def _poll(self, procs, ended: list, attempt: _Attempt, kill_at: float | None):
        """Note hosts whose main process ended; a host that failed ends the whole job."""
        for p in procs:
            code = p.poll()
            if code is not None and all(p is not q for q, _ in ended):
                ended.append((p, code))
                if code != 0 and kill_at is None:
                    attempt.outcome = "failed"
                    kill_at = self._terminate(procs)
        return kill_at

    def _should_end(self, start: float, number: int) -> str | None:
        plan = self.plan
        if self._stop.is_set():
            return "stopped"
        training = self.record.billable_seconds + (time.monotonic() - start)
        if training > plan.max_runtime_seconds:
            return "max_runtime"
        if plan.spot and plan.max_wait_seconds:
            waited = (record.now() - self.record.created).total_seconds()
            if waited > plan.max_wait_seconds:
                return "max_wait"
        if number == 0 and (
            self._reclaim.is_set()
            or (
                self.interrupt_after is not None
                and self._script_started is not None
                and time.monotonic() - self._script_started > self.interrupt_after
            )
        ):
            self._line(
                "engine", "[sm-toolkit] spot interruption: SIGTERM to every host, as a reclaim does"
            )
            return "interrupted"
        return None

    def _terminate(self, procs) -> float:
        for p in procs:
            p.terminate()
        return time.monotonic() + self.stop_grace

    def _finish(self, attempt: _Attempt, s3: S3) -> None:
        status, secondary = {
            "completed": ("Completed", "Completed"),
            "failed": ("Failed", "Failed"),
            "stopped": ("Stopped", "Stopped"),
            "max_runtime": ("Stopped", "MaxRuntimeExceeded"),
            "max_wait": ("Stopped", "MaxWaitTimeExceeded"),
        }[attempt.outcome]
        self.record.training_end = record.now()
        done = upload(self.plan, attempt.hosts, s3, self.job_dir / "scratch", status)
        self.record.model_artifacts = done.model
        problems = self.notes_not_uploaded + done.problems
        message = "Uploading generated training model" + (
            "; not uploaded: " + "; ".join(problems) if problems else ""
        )
        self.record.move("Uploading", message[:1000])
        reason = attempt.reason
        if done.problems:  # the artifacts SageMaker promises are missing: say so in the reason
            status, secondary = (
                ("Failed", "Failed") if status == "Completed" else (status, secondary)
            )
            reason = "; ".join([reason or "ClientError", *done.problems])
        if reason:
            reason = reason[: contract.FAILURE_REASON_LIMIT]
        self.record.finish(status, secondary, reason)

    # -- warm pools --------------------------------------------------------------------
    def _take_pool(self):
        if self.plan.keep_alive_seconds <= 0:
            return None
        taken, expired = warm_pool.take(self.workdir, self.plan, self.backend.name)
        for old in expired:
            self.backend.end_pool(old)
            warm_pool.mark_job(self.workdir, old.job_name, "Terminated")
            warm_pool.end(old)
        if taken is not None:
            warm_pool.mark_job(self.workdir, taken.job_name, "Reused", reused_by=self.name)
            self.backend.adopt_pool(taken)
        else:
            taken = warm_pool.new_pool(self.workdir, self.plan, self.backend.name)
        self.record.warm_pool = {"Status": "InUse"}
        return taken

    def _release_pool(self, pool, attempt: _Attempt | None) -> None:
        self.backend.finish(keep=pool is not None)
        if pool is None:
            return
        kept = self.backend.keep_pool(
            pool, attempt.hosts if attempt else [], self.plan.keep_alive_seconds
        )
        warm_pool.release(self.workdir, pool, self.plan, self.backend.name, kept)
        self.record.warm_pool = {"Status": "Available", "ResourceRetainedBillableTimeInSeconds": 0}

    # -- lines and status ----------------------------------------------------------------
    def _host_line(self, host: Host, text: str) -> None:
        if self._script_started is None and (
            SCRIPT_STARTED in text or not self.plan.launch.is_train
        ):
            self._script_started = time.monotonic()
        self._line(host.name, text)
        for name, value in self._parser.feed(text):
            at = time.time()
            self.record.metric(name, value, at)
            self.tracking.metric(name, value, at)
            if self.events.on_metric is not None:
                self.events.on_metric(name, value, at)

    def _line(self, host: str, text: str) -> None:
        if self.events.on_line is not None:
            self.events.on_line(host, text)

    def _status_changed(self, doc: dict) -> None:
        if self.events.on_status is not None:
            self.events.on_status(doc)

    @property
    def metric_series(self) -> dict[str, list[float]]:
        return self._parser.series


def _outcome(plan, procs, ended) -> tuple[str, str | None]:
    """Completed, or Failed with the first failing host's own reason (its failure file)."""
    order = [p for p, code in ended if code != 0] + [p for p, code in ended if code == 0]
    for p in order:
        failure = p.host.opt_ml / contract.FAILURE_FILE
        text = failure.read_text(errors="replace").strip() if failure.is_file() else ""
        # A failure file wins over a zero exit code: the PyTorch toolkit's torchrun runner
        # can report success after a failed script.
        if text:
            return "failed", f"AlgorithmError: {text}"[: contract.FAILURE_REASON_LIMIT]
    for p, code in ended:
        if code != 0:
            tail = p.host.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            return "failed", (
                f"AlgorithmError: {p.host.name}: exit code {code}: " + " | ".join(tail)
            )[: contract.FAILURE_REASON_LIMIT]
        if plan.launch.is_train and not (p.host.opt_ml / contract.SUCCESS_FILE).exists():
            return (
                "failed",
                f"AlgorithmError: {p.host.name}: train exited without reporting success",
            )
    return "completed", None


def run_training_job(
    request: dict[str, Any],
    *,
    workdir: Path | str = DEFAULT_WORKDIR,
    backend: str = "process",
    image: str | None = None,
    on_line: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    interrupt_after: float | None = None,
    tracking_parent: tracking.ParentRun | None = None,
    network: str | None = None,
    workers=None,
) -> dict[str, Any]:
    """Run one CreateTrainingJob request to the end; return its DescribeTrainingJob document.

    A failing script is a Failed document, not an exception; a request the engine cannot run
    raises ConfigError (one line naming the field). The job's MLflow run is made a child of
    ``tracking_parent`` when given (a tuning job's run). ``workers``: a
    ``backends.worker.WorkerStock`` whose started interpreters the process backend uses
    (a tuning job's trials)."""
    multi = [False]

    def line(host: str, text: str) -> None:
        if on_line is not None:
            on_line(tag_line(host, text, several_hosts=multi[0]))

    job = TrainingJob(
        request,
        workdir=workdir,
        backend=backend,
        image=image,
        events=JobEvents(on_line=line),
        interrupt_after=interrupt_after,
        tracking_parent=tracking_parent,
        network=network,
        workers=workers,
    )
    multi[0] = job.plan.instance_count > 1
    job.start()
    while not job._done.wait(0.2):
        if stop_event is not None and stop_event.is_set():
            job.stop()
            break
    return job.wait()


def update_training_job(
    workdir: Path | str, job_name: str, keep_alive_seconds: int, backend: str = "process"
) -> dict[str, Any]:
    """UpdateTrainingJob's ResourceConfig.KeepAlivePeriodInSeconds for a finished job's pool
    (0 ends it now); returns the job's document."""
    workdir = Path(workdir).resolve()
    path = workdir / "jobs" / job_name / "describe.json"
    if not path.is_file():
        raise ConfigError("TrainingJobName", job_name, f"a job in {workdir / 'jobs'}")
    ending = warm_pool.set_keep_alive(workdir, job_name, keep_alive_seconds)
    if ending is not None:
        get_backend(backend).end_pool(ending)
        warm_pool.end(ending)
        warm_pool.mark_job(workdir, job_name, "Terminated")
    return record.load(path)
