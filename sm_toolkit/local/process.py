"""The process backend of ``run --local``: one training job on this machine, no Docker.

It renders the job's real CreateTrainingJob request (the SDK's own hyperparameters and
environment), lays out a relocated /opt/ml, stages channels from S3, runs
sagemaker-training's ``train`` launcher with the PyTorch toolkit (as the AWS PyTorch
containers do), then uploads model.tar.gz / output.tar.gz like SageMaker does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sm_toolkit.errors import LocalRunError
from sm_toolkit.local import opt_ml
from sm_toolkit.local.metrics import MetricParser
from sm_toolkit.local.s3 import S3Stage, copy_local_input
from sm_toolkit.spec import JobSpec

FAILURE_REASON_LIMIT = 1024  # SageMaker keeps this much of /opt/ml/output/failure
TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
STOP_GRACE_SECONDS = 30


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


def run_job(
    spec: JobSpec,
    *,
    job_name: str,
    workdir: Path,
    hyperparameters: dict | None = None,
    on_line: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> LocalJobResult:
    """Run one training job locally and return its outcome (never raises for a job that
    fails: that is a Failed result, with the reason SageMaker would show)."""
    start = time.monotonic()
    job = _prepare(spec, job_name, Path(workdir).resolve(), hyperparameters or {})
    stage = S3Stage(spec.region)
    _stage_inputs(spec, job.base, stage)
    if spec.checkpoint is not None:
        stage.download_prefix(spec.checkpoint.s3_uri, job.checkpoint_dir)
    parser = MetricParser(spec.metrics)
    rc, stopped = _run_train(job, parser, on_line, stop_event)
    status, reason = _outcome(job.base, rc, stopped, job.log_path)
    if spec.checkpoint is not None:
        stage.upload_dir(job.checkpoint_dir, spec.checkpoint.s3_uri)
    model_uri, output_uri = _upload_artifacts(spec, job_name, job.base, stage)
    return LocalJobResult(
        job_name,
        status,
        reason,
        parser.final,
        parser.series,
        model_uri,
        output_uri,
        job.base,
        job.log_path,
        time.monotonic() - start,
    )


@dataclass(frozen=True)
class _Job:
    base: Path
    log_path: Path
    checkpoint_dir: Path
    env: dict[str, str]


def _prepare(spec: JobSpec, job_name: str, workdir: Path, overrides: dict) -> _Job:
    if spec.distribution.type in ("smddp", "pytorchddp"):
        raise LocalRunError(
            f"distribution {spec.distribution.type} runs SMDDP, which needs "
            "NVIDIA GPUs (P4d/P4de/P5); locally use torch_distributed"
        )
    if spec.instance.count != 1:
        raise LocalRunError(
            f"instance.count {spec.instance.count}: the process backend runs "
            "one host; set instance.count: 1 for a local run"
        )
    request = _training_request(spec, job_name, overrides)
    job_dir = workdir / "jobs" / job_name
    if job_dir.exists():
        shutil.rmtree(job_dir)
    base = job_dir / "opt_ml"
    opt_ml.write_tree(
        base,
        hyperparameters=opt_ml.hyperparameters_payload(
            request["HyperParameters"], str(spec.source_dir)
        ),
        resourceconfig=opt_ml.resource_config(["algo-1"], "algo-1", spec.instance.type),
        inputdataconfig=opt_ml.input_data_config(list(spec.inputs)),
    )
    checkpoint_dir = opt_ml.container_path(
        spec.checkpoint.local_path if spec.checkpoint else "/opt/ml/checkpoints", base
    )
    if spec.checkpoint is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    env = _process_env(spec, request, job_name, base)
    return _Job(base, job_dir / "train.log", checkpoint_dir, env)


_RENDER_LOCK = threading.Lock()


def _training_request(spec: JobSpec, job_name: str, overrides: dict) -> dict:
    """The CreateTrainingJob request of this job with ``overrides`` applied, as the SDK
    builds it (tuning trials are plain training jobs)."""
    from sm_toolkit.aws.render import render  # the SDK is heavy; only the runner needs it

    hps = {**spec.hyperparameters, **overrides}
    single = spec.model_copy(update={"tuning": None, "hyperparameters": hps})
    with _RENDER_LOCK:  # the SDK's estimator machinery is not known to be thread safe
        return render(single, job_name=job_name).request


def _process_env(spec: JobSpec, request: dict, job_name: str, base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in request.get("Environment", {}).items():
        env[key] = str(opt_ml.container_path(value, base)) if value.startswith("/opt/ml") else value
    env.update(
        {
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
            # One host named algo-1 that no DNS knows: skip the toolkit's 15-minute DNS wait.
            "SM_STUDIO_LOCAL_MODE": "true",
            "TRAINING_JOB_NAME": job_name,
            "AWS_REGION": spec.region,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if spec.rules:
        env["SM_TOOLKIT_RULES"] = ",".join(spec.rules)
    return env


def _stage_inputs(spec: JobSpec, base: Path, stage: S3Stage) -> None:
    for channel, uri in spec.inputs.items():
        target = base / "input" / "data" / channel
        if uri.startswith("s3://"):
            if stage.download_prefix(uri, target) == 0:
                raise LocalRunError(f"inputs.{channel}: no objects under {uri}")
        else:
            source = Path(uri)
            if not source.exists():
                raise LocalRunError(f"inputs.{channel}: local path {uri} does not exist")
            copy_local_input(source, target)


def train_command() -> list[str]:
    """sagemaker-training's ``train`` console script beside this interpreter."""
    beside = Path(sys.executable).parent / "train"
    found = str(beside) if beside.exists() else shutil.which("train")
    if not found:
        raise LocalRunError(
            "sagemaker-training's `train` command was not found; "
            "install sm-toolkit with its dependencies"
        )
    return [found]


def _run_train(job: _Job, parser: MetricParser, on_line, stop_event) -> tuple[int, bool]:
    proc = subprocess.Popen(
        train_command(),
        cwd=job.base,
        env=job.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )
    stopped = threading.Event()
    watcher = None
    if stop_event is not None:
        watcher = threading.Thread(
            target=_stop_when_set, args=(proc, stop_event, stopped), daemon=True
        )
        watcher.start()
    with open(job.log_path, "w") as log:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            parser.feed(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
    rc = proc.wait()
    return rc, stopped.is_set()


def _stop_when_set(
    proc: subprocess.Popen, stop_event: threading.Event, stopped: threading.Event
) -> None:
    """Like StopTrainingJob: SIGTERM to the whole process group, SIGKILL after a grace."""
    while proc.poll() is None:
        if stop_event.wait(0.2):
            if proc.poll() is not None:
                return
            stopped.set()
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
            return


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _outcome(base: Path, rc: int, stopped: bool, log_path: Path) -> tuple[str, str | None]:
    failure = base / "output" / "failure"
    if stopped:
        return "Stopped", None
    # A failure file wins over a zero exit code: sagemaker-pytorch-training's torchrun
    # runner can report success after a failed script (swapped wait/capture_error).
    if failure.exists() and failure.read_text().strip():
        return "Failed", failure.read_text()[:FAILURE_REASON_LIMIT]
    if rc != 0 or not (base / "output" / "success").exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        why = f"exit code {rc}" if rc != 0 else "the launcher exited without reporting success"
        return "Failed", (f"{why}: " + " | ".join(tail))[:FAILURE_REASON_LIMIT]
    return "Completed", None


def _upload_artifacts(
    spec: JobSpec, job_name: str, base: Path, stage: S3Stage
) -> tuple[str | None, str | None]:
    prefix = f"{spec.output_path.rstrip('/')}/{job_name}/output"
    uris = []
    for name, folder in (
        ("model.tar.gz", base / "model"),
        ("output.tar.gz", base / "output" / "data"),
    ):
        archive = base.parent / name
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        uris.append(stage.upload_file(archive, f"{prefix}/{name}"))
    return uris[0], uris[1]


def describe(result: LocalJobResult) -> dict:
    """A DescribeTrainingJob-shaped summary of a local job."""
    return {
        "TrainingJobName": result.job_name,
        "TrainingJobStatus": result.status,
        **({"FailureReason": result.failure_reason} if result.failure_reason else {}),
        "ModelArtifacts": {"S3ModelArtifacts": result.model_artifacts},
        "FinalMetricDataList": [
            {"MetricName": k, "Value": v} for k, v in sorted(result.final_metrics.items())
        ],
        "TrainingTimeInSeconds": round(result.seconds, 1),
        "LocalDirectory": str(result.base_dir),
        "LogFile": str(result.log_path),
    }


def dumps(result: LocalJobResult) -> str:
    return json.dumps(describe(result), indent=2)
