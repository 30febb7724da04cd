"""Experiment tracking for local jobs: one MLflow run per training job, made by the engine.

Where runs go: the request's Environment ``MLFLOW_TRACKING_URI`` (and
``MLFLOW_EXPERIMENT_NAME``) when it has them, as on SageMaker; else an embedded store in the
work folder, ``sqlite:///<workdir>/mlflow/mlflow.db`` with artifacts beside it
(``<workdir>/mlflow/artifacts``), so no server is needed (``sm-toolkit ui`` opens it).

The engine opens the run before the hosts start and hands the container its id
(``MLFLOW_RUN_ID``, with the URI and experiment): code in the container that logs with MLflow
(the project's trainer logs the model there) writes into this run instead of a second one.
When the job ends the engine fills the run from what it saw, so the run agrees with the
DescribeTrainingJob document:

- params: the request's HyperParameters as the script receives them (JSON quotes of the
  SDK's encoding removed); SageMaker's own ``sagemaker_*`` keys and AMT's
  ``_tuning_objective_metric`` are not the user's parameters and become tags;
- metrics: every value the MetricDefinitions read from the log, step = its order, so each
  metric's latest value is its FinalMetricDataList value;
- tags: job name, ARN, instance type and count, distribution, SDK generation, image, the git
  commit of a local source_dir, spot interruptions, warm-pool status, final status and
  FailureReason;
- artifacts: the request (``request.json``), ``model/model.tar.gz``, and the files the job
  wrote to /opt/ml/output/data (plots, metrics.json) under ``output/``.

Tracking never fails a job: without mlflow installed, or with a store that cannot be
reached, the job runs and the log says why nothing was recorded.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.local.plan import JobPlan

STORE_DIR = "mlflow"  # under the workdir
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
# Run tags (MLflow's own for the git commit, so its UI shows it).
TAG_PREFIX = "sagemaker."
GIT_COMMIT_TAG = "mlflow.source.git.commit"
PARENT_TAG = "mlflow.parentRunId"
STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Stopped": "KILLED"}
OUTPUT_SUFFIXES = (".png", ".json", ".csv", ".txt", ".svg")
MAX_BATCH = 1000  # MLflow's limit of metrics in one log_batch call


def default_uri(workdir: Path | str) -> str:
    """The embedded store of a work folder (SQLite, no server)."""
    return f"sqlite:///{Path(workdir).resolve() / STORE_DIR / DB_FILE}"


@dataclass(frozen=True)
class TrackingTarget:
    """Where a job's run goes: the tracking URI as this machine reaches it, and the
    experiment. ``embedded`` when it is the work folder's default store."""

    uri: str
    experiment: str
    embedded: bool
    artifact_root: str | None = None  # for a new experiment in a local store


@dataclass(frozen=True)
class ParentRun:
    """A run that a job's run becomes a child of (a tuning job's), and the store it is in
    (a tuning job's trials log where their parent does)."""

    run_id: str
    target: TrackingTarget


def target_for(environment: dict[str, str], workdir: Path | str) -> TrackingTarget:
    """The tracking target of a request's Environment (pure apart from resolving paths);
    ConfigError names a value MLflow could not use."""
    raw = environment.get(contract.MLFLOW_TRACKING_URI_ENV)
    experiment = environment.get(contract.MLFLOW_EXPERIMENT_ENV, contract.DEFAULT_EXPERIMENT)
    if not contract.experiment_name_ok(experiment):
        raise ConfigError(
            f"Environment.{contract.MLFLOW_EXPERIMENT_ENV}",
            experiment,
            "an MLflow experiment name: not empty, no surrounding spaces or control characters",
        )
    if raw is None:
        root = Path(workdir).resolve() / STORE_DIR
        return TrackingTarget(default_uri(workdir), experiment, True, str(root / ARTIFACTS_DIR))
    if not contract.tracking_uri_ok(raw):
        raise ConfigError(
            f"Environment.{contract.MLFLOW_TRACKING_URI_ENV}", raw, contract.TRACKING_URI_HINT
        )
    return _resolved(raw, experiment)


def _resolved(raw: str, experiment: str) -> TrackingTarget:
    """Local stores as absolute URIs (the job's processes run in other folders)."""
    if raw.startswith("sqlite:///"):
        path = Path(raw[len("sqlite:///") :]).resolve()
        return TrackingTarget(
            f"sqlite:///{path}", experiment, False, str(path.parent / ARTIFACTS_DIR)
        )
    if "://" in raw or raw.startswith(("databricks", "arn:")):
        return TrackingTarget(raw, experiment, False)
    path = Path(urlparse(raw).path if raw.startswith("file:") else raw).resolve()
    return TrackingTarget(path.as_uri(), experiment, False)


def ui_command(workdir: Path | str, port: int) -> list[str]:
    """``mlflow server`` on the work folder's embedded store, bound to 127.0.0.1 only (the
    same as ``mlflow ui --backend-store-uri sqlite:///<workdir>/mlflow/mlflow.db``)."""
    import sys

    root = Path(workdir).resolve() / STORE_DIR
    return [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", default_uri(workdir),
        "--artifacts-destination", str(root / ARTIFACTS_DIR),
    ]  # fmt: skip


def client_for(target: TrackingTarget):
    """An MlflowClient on the target (its experiment made if missing); returns the client
    and the experiment id."""
    import mlflow  # noqa: F401 - ImportError tells the caller tracking is off
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow prints its schema migrations at INFO on the first use of a store.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if target.uri.startswith("sqlite:///"):
        db = Path(target.uri[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
        if target.embedded and not db.exists():
            _new_embedded_store(db)
    client = MlflowClient(tracking_uri=target.uri)
    found = client.get_experiment_by_name(target.experiment)
    if found is not None:
        return client, found.experiment_id
    try:
        return client, client.create_experiment(
            target.experiment, artifact_location=target.artifact_root
        )
    except MlflowException:  # made meanwhile by a parallel trial
        return client, client.get_experiment_by_name(target.experiment).experiment_id


_TEMPLATE_LOCK = threading.Lock()
_TEMPLATE: list[Path] = []  # this process's empty store, made by MLflow


def _new_embedded_store(db: Path) -> None:
    """A new work folder's store, as a copy of an empty one MLflow made in this process.

    MLflow builds a new SQLite store by running every schema migration: 1.8 s on an idle
    2-core machine, 6-13 s under load here, for each work folder (each tuning job, each
    test). Copying the empty store costs milliseconds. The template's Default experiment
    (id 0) would name the template's folder as its artifact location, so it is deleted
    there; sm-toolkit's runs go to named experiments. ``os.link`` keeps a store that another
    process made meanwhile."""
    from mlflow import MlflowClient

    with _TEMPLATE_LOCK:
        if not _TEMPLATE or not _TEMPLATE[0].is_file():
            folder = Path(tempfile.mkdtemp(prefix="sm-toolkit-mlflow-"))
            atexit.register(shutil.rmtree, folder, True)
            template = folder / DB_FILE
            MlflowClient(tracking_uri=f"sqlite:///{template}").delete_experiment("0")
            _TEMPLATE[:] = [template]
        partial = db.with_name(f".{db.name}.{os.getpid()}.{threading.get_ident()}")
        shutil.copyfile(_TEMPLATE[0], partial)
    try:
        os.link(partial, db)
    except FileExistsError:
        pass
    finally:
        partial.unlink()


def sdk_generation(plan: JobPlan) -> str:
    """Which launch contract wrote the request: SDK v3's drivers, or v2 script mode."""
    if any(c.name == contract.V3_DRIVERS_CHANNEL for c in plan.channels):
        return "v3"
    if contract.HP_PROGRAM in plan.hyperparameters:
        return "v2"
    return "unknown"


def git_commit(code_uri: str | None) -> str | None:
    """The commit of a local source_dir that is inside a git checkout."""
    if not code_uri or not code_uri.startswith("file://"):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", urlparse(code_uri).path, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def start_tags(plan: JobPlan) -> dict[str, str]:
    """What is known about the job before it runs."""
    tags = {
        contract.MLFLOW_JOB_NAME_TAG: plan.name,
        TAG_PREFIX + "training_job_arn": plan.arn,
        TAG_PREFIX + "instance_type": plan.instance_type,
        TAG_PREFIX + "instance_count": str(plan.instance_count),
        TAG_PREFIX + "distribution": plan.distribution,
        TAG_PREFIX + "sdk": sdk_generation(plan),
        TAG_PREFIX + "image": plan.image,
        TAG_PREFIX + "spot": str(plan.spot).lower(),
        "sm-toolkit.backend": "local",
    }
    commit = git_commit(plan.code_uri)
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    _, internal = contract.split_hyperparameters(plan.hyperparameters)
    tags.update({f"{TAG_PREFIX}hp.{k}": v for k, v in internal.items()})
    return tags


def end_tags(doc: dict[str, Any]) -> dict[str, str]:
    """What the DescribeTrainingJob document says once the job ended."""
    transitions = [t["Status"] for t in doc.get("SecondaryStatusTransitions", [])]
    tags = {
        TAG_PREFIX + "status": doc["TrainingJobStatus"],
        TAG_PREFIX + "secondary_status": doc.get("SecondaryStatus", ""),
        TAG_PREFIX + "spot_interruptions": str(transitions.count("Interrupted")),
        TAG_PREFIX + "warm_pool_status": (doc.get("WarmPoolStatus") or {}).get("Status", "None"),
    }
    if doc.get("FailureReason"):
        tags[TAG_PREFIX + "failure_reason"] = doc["FailureReason"]
    model = (doc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if model:
        tags[TAG_PREFIX + "model_artifacts"] = model
    return tags


def _unresolved_host(uri: str) -> str | None:
    """The host of an http(s) URI that this machine cannot resolve (MLflow would retry it
    for minutes), else None."""
    import socket

    if not uri.startswith(("http://", "https://")):
        return None
    host = urlparse(uri).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return host
    return None


@dataclass
class JobTracking:
    """The engine's MLflow run of one job: opened before the hosts start, filled at the end."""

    plan: JobPlan
    target: TrackingTarget
    parent_run_id: str | None = None
    run_id: str | None = None
    problem: str | None = None  # why nothing is recorded, when so
    _client: Any = None
    _metrics: list[tuple[str, float, float]] = field(default_factory=list)

    def open(self) -> dict[str, str]:
        """Make the run; returns the variables the job's containers get. Never raises."""
        unknown = _unresolved_host(self.target.uri)
        if unknown:  # a name on the user's Docker network: the job's own code logs its run
            self.problem = f"{unknown} does not resolve here (the job's code may log its own run)"
            return {}
        try:
            client, experiment_id = client_for(self.target)
            tags = start_tags(self.plan)
            if self.parent_run_id:
                tags[PARENT_TAG] = self.parent_run_id
            run = client.create_run(experiment_id, run_name=self.plan.name, tags=tags)
        except ImportError:
            self.problem = "mlflow is not installed (pip install 'sm-toolkit[tracking]')"
            return {}
        except Exception as err:  # noqa: BLE001 - a store that is down must not fail the job
            self.problem = f"{self.target.uri}: {type(err).__name__}: {str(err)[:200]}"
            return {}
        self._client, self.run_id = client, run.info.run_id
        return {
            contract.MLFLOW_TRACKING_URI_ENV: self.target.uri,
            contract.MLFLOW_EXPERIMENT_ENV: self.target.experiment,
            contract.MLFLOW_RUN_ID_ENV: self.run_id,
        }

    def metric(self, name: str, value: float, at: float) -> None:
        """One value a MetricDefinition read (kept; logged when the job ends)."""
        self._metrics.append((name, value, at))

    def close(self, doc: dict[str, Any], job_dir: Path, output_dirs: list[Path]) -> None:
        """Params, metrics, tags, artifacts, then the run's end status. Raises on a store
        error (the engine reports it in one line)."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        client, run_id = self._client, self.run_id
        params, _ = contract.split_hyperparameters(self.plan.hyperparameters)
        steps: dict[str, int] = {}
        metrics = []
        for name, value, at in self._metrics:
            steps[name] = steps.get(name, 0) + 1
            metrics.append(Metric(name, value, int(at * 1000), steps[name]))
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        for i in range(0, len(metrics), MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH])
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in end_tags(doc).items()])
        self._log_artifacts(job_dir, output_dirs)
        end = doc.get("TrainingEndTime") or doc.get("LastModifiedTime")
        client.set_terminated(
            run_id,
            STATUS.get(doc["TrainingJobStatus"], "FAILED"),
            int(end.timestamp() * 1000) if end is not None else None,
        )

    def _log_artifacts(self, job_dir: Path, output_dirs: list[Path]) -> None:
        client, run_id = self._client, self.run_id
        with tempfile.TemporaryDirectory() as tmp:
            request = Path(tmp) / "request.json"
            request.write_text(json.dumps(self.plan.request, indent=2, default=str))
            client.log_artifact(run_id, str(request))
        model = job_dir / "scratch" / "model.tar.gz"
        if model.is_file():
            client.log_artifact(run_id, str(model), artifact_path="model")
        for folder in output_dirs[:1]:  # the first host's: rank 0 writes plots and reports
            for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                if path.is_file() and path.suffix in OUTPUT_SUFFIXES:
                    sub = path.parent.relative_to(folder).as_posix()
                    where = "output" if sub == "." else f"output/{sub}"
                    client.log_artifact(run_id, str(path), artifact_path=where)
