"""The process backend of ``run --local``: a training job on this machine, no Docker.

It renders the job's real CreateTrainingJob request (the SDK's own hyperparameters and
environment), lays out a relocated /opt/ml per host, stages channels from S3 (or a warm
pool), restores and syncs checkpoints, runs sagemaker-training's ``train`` launcher with
the PyTorch toolkit (as the AWS PyTorch containers do) on every host, restarts after a
simulated spot interruption, and uploads model.tar.gz / output.tar.gz like SageMaker.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sm_toolkit.errors import LocalRunError
from sm_toolkit.local import hosts as host_layout
from sm_toolkit.local.channels import stage_channels
from sm_toolkit.local.checkpoints import CheckpointSync
from sm_toolkit.local.hosts import Host
from sm_toolkit.local.launcher import SCRIPT_STARTED, run_hosts
from sm_toolkit.local.metrics import MetricParser
from sm_toolkit.local.s3 import S3Stage
from sm_toolkit.spec import JobSpec

FAILURE_REASON_LIMIT = 1024  # SageMaker keeps this much of /opt/ml/output/failure


@dataclass(frozen=True)
class LocalJobResult:
    job_name: str
    status: str  # Completed | Failed | Stopped
    failure_reason: str | None
    final_metrics: dict[str, float]
    metric_series: dict[str, list[float]]
    model_artifacts: str | None
    output_artifacts: str | None
    base_dir: Path
    log_path: Path
    seconds: float
    startup_seconds: float | None = None  # job start to the user's script starting
    interruptions: int = 0
    warm_pool: str | None = None  # "Reused" when staged data came from a warm pool
    notes: list[str] = field(default_factory=list)


def run_job(
    spec: JobSpec,
    *,
    job_name: str,
    workdir: Path,
    hyperparameters: dict | None = None,
    on_line: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    interrupt_after: float | None = None,
) -> LocalJobResult:
    """Run one training job locally and return its outcome. A job that fails is a Failed
    result with the reason SageMaker would show, not an exception."""
    start = time.monotonic()
    _refuse_what_cannot_run_here(spec)
    workdir = Path(workdir).resolve()
    request = _training_request(spec, job_name, hyperparameters or {})
    stage = S3Stage(spec.region)
    parser = MetricParser(spec.metrics)
    started: list[float] = []

    def line(text: str) -> None:
        parser.feed(text)
        if not started and SCRIPT_STARTED in text:
            started.append(time.monotonic() - start)
        if on_line is not None:
            on_line(text)

    interruptions, pool_state = 0, None
    while True:
        job_dir = workdir / "jobs" / job_name
        shutil.rmtree(job_dir, ignore_errors=True)  # a restart gets fresh instances
        hosts = host_layout.layout(spec, request, job_name, job_dir)
        pool_state = _stage_inputs(spec, hosts, stage, workdir)
        sync = _checkpoint_sync(spec, hosts, stage)
        outcome = run_hosts(
            hosts,
            on_line=line,
            stop_event=stop_event,
            interrupt_after=interrupt_after if interruptions == 0 else None,
        )
        if sync is not None:
            sync.stop()
        if not outcome.interrupted:
            break
        interruptions += 1
        line(
            f"[sm-toolkit] restarting {job_name} after the interruption (attempt "
            f"{interruptions + 1}); checkpoints restore from {spec.checkpoint.s3_uri}"
            if spec.checkpoint
            else f"[sm-toolkit] restarting {job_name} from scratch (no checkpoint configured)"
        )
    status, reason = _outcome(hosts, outcome.return_codes, outcome.stopped)
    model_uri, output_uri = _upload_artifacts(spec, job_name, hosts, stage)
    return LocalJobResult(
        job_name,
        status,
        reason,
        parser.final,
        parser.series,
        model_uri,
        output_uri,
        hosts[0].base,
        hosts[0].log_path,
        time.monotonic() - start,
        started[0] if started else None,
        interruptions,
        pool_state,
    )


def _refuse_what_cannot_run_here(spec: JobSpec) -> None:
    if spec.distribution.type in ("smddp", "pytorchddp"):
        raise LocalRunError(
            f"distribution {spec.distribution.type} runs SMDDP, which needs "
            "NVIDIA GPUs (P4d/P4de/P5); locally use torch_distributed"
        )
    if spec.distribution.type == "mpi":
        raise LocalRunError(
            "distribution mpi needs sshd and mpirun between hosts; locally "
            "use torch_distributed, or the docker backend"
        )


_RENDER_LOCK = threading.Lock()


def _training_request(spec: JobSpec, job_name: str, overrides: dict) -> dict:
    """The CreateTrainingJob request of this job with ``overrides`` applied, as the SDK
    builds it (tuning trials are plain training jobs)."""
    from sm_toolkit.aws.render import render  # the SDK is heavy; only the runner needs it

    hps = {**spec.hyperparameters, **overrides}
    single = spec.model_copy(update={"tuning": None, "hyperparameters": hps})
    with _RENDER_LOCK:  # the SDK's estimator machinery is not known to be thread safe
        return render(single, job_name=job_name).request


def _stage_inputs(spec: JobSpec, hosts: list[Host], stage: S3Stage, workdir: Path) -> str | None:
    """Channels into the leader's input/data (see ``stage_channels``), copied to the others."""
    leader = hosts[0].base / "input" / "data"
    state = stage_channels(spec, stage, workdir, leader)
    for host in hosts[1:]:
        for channel in spec.inputs:
            shutil.copytree(
                leader / channel, host.base / "input" / "data" / channel, dirs_exist_ok=True
            )
    return state


def _checkpoint_sync(spec: JobSpec, hosts: list[Host], stage: S3Stage) -> CheckpointSync | None:
    if spec.checkpoint is None:
        return None
    sync = CheckpointSync(stage, spec.checkpoint.s3_uri, [h.checkpoint_dir for h in hosts])
    sync.restore()
    return sync.start()


def _outcome(hosts: list[Host], codes: list[int], stopped: bool) -> tuple[str, str | None]:
    if stopped:
        return "Stopped", None
    for host, rc in zip(hosts, codes, strict=True):
        failure = host.base / "output" / "failure"
        # A failure file wins over a zero exit code: sagemaker-pytorch-training's torchrun
        # runner can report success after a failed script (swapped wait/capture_error).
        if failure.exists() and failure.read_text().strip():
            return "Failed", failure.read_text()[:FAILURE_REASON_LIMIT]
        if rc != 0 or not (host.base / "output" / "success").exists():
            tail = host.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            why = f"exit code {rc}" if rc != 0 else "the launcher exited without reporting success"
            return "Failed", (f"{host.name}: {why}: " + " | ".join(tail))[:FAILURE_REASON_LIMIT]
    return "Completed", None


def _upload_artifacts(
    spec: JobSpec, job_name: str, hosts: list[Host], stage: S3Stage
) -> tuple[str, str]:
    """model.tar.gz and output.tar.gz from every host's model/ and output/data/ (merged, as
    SageMaker local mode does), uploaded to <output_path>/<job>/output/."""
    prefix = f"{spec.output_path.rstrip('/')}/{job_name}/output"
    uris = []
    for name, sub in (("model.tar.gz", "model"), ("output.tar.gz", "output/data")):
        archive = hosts[0].base.parent / name
        with tarfile.open(archive, "w:gz") as tar:
            added: set[str] = set()
            for host in hosts:
                folder = host.base / sub
                for path in sorted(folder.rglob("*")):
                    arcname = path.relative_to(folder).as_posix()
                    if arcname not in added:
                        tar.add(path, arcname=arcname, recursive=False)
                        added.add(arcname)
        uris.append(stage.upload_file(archive, f"{prefix}/{name}"))
    return uris[0], uris[1]


def describe(result: LocalJobResult) -> dict:
    """A DescribeTrainingJob-shaped summary of a local job."""
    out = {
        "TrainingJobName": result.job_name,
        "TrainingJobStatus": result.status,
        **({"FailureReason": result.failure_reason} if result.failure_reason else {}),
        "ModelArtifacts": {"S3ModelArtifacts": result.model_artifacts},
        "OutputArtifacts": result.output_artifacts,
        "FinalMetricDataList": [
            {"MetricName": k, "Value": v} for k, v in sorted(result.final_metrics.items())
        ],
        "TrainingTimeInSeconds": round(result.seconds, 1),
        "StartupSeconds": None
        if result.startup_seconds is None
        else round(result.startup_seconds, 2),
        "Interruptions": result.interruptions,
        "LocalDirectory": str(result.base_dir),
        "LogFile": str(result.log_path),
    }
    if result.warm_pool:
        out["WarmPoolStatus"] = {"Status": result.warm_pool}
    return out


def dumps(result: LocalJobResult) -> str:
    return json.dumps(describe(result), indent=2)
