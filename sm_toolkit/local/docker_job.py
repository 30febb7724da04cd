"""``run --local --backend docker``: a job spec in the training image, via SageMaker local mode.

The same job as the process backend, with what local mode lacks done around it here:

* S3 channels are downloaded on this machine (``S3Stage``) and handed to local mode as
  ``file://`` folders; with a warm pool, a following matching job reuses them;
* the checkpoint S3 prefix is restored into a host folder, which is mounted into every
  container at the spec's checkpoint path (a compose ``extends`` file: local mode replaces
  any ``volumes`` in its container config) and synced back during and after the job;
* a simulated spot reclaim is ``docker kill --signal TERM`` of every container of the job
  (the image's launcher forwards it to the script, which checkpoints and exits), then the
  job runs again on fresh containers and resumes from the S3 checkpoints;
* final metrics are read from the compose log with the spec's regexes, and model.tar.gz /
  output.tar.gz are uploaded to ``<output_path>/<job>/output/``.
"""

from __future__ import annotations

import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from sm_toolkit.errors import LocalRunError
from sm_toolkit.local.channels import stage_channels
from sm_toolkit.local.checkpoints import CheckpointSync
from sm_toolkit.local.docker import DockerJobResult, kill_labelled, run_job_docker
from sm_toolkit.local.launcher import SCRIPT_STARTED
from sm_toolkit.local.metrics import MetricParser
from sm_toolkit.local.process import LocalJobResult
from sm_toolkit.local.s3 import S3Stage
from sm_toolkit.spec import JobSpec

DEFAULT_IMAGE = "sm-toolkit:latest"
JOB_LABEL = "sm-toolkit.job"  # on every container of one attempt, to find them to reclaim


def run_job_docker_spec(
    spec: JobSpec,
    *,
    job_name: str,
    workdir: Path,
    image: str = DEFAULT_IMAGE,
    hyperparameters: dict | None = None,
    on_line: Callable[[str], None] | None = None,
    interrupt_after: float | None = None,
) -> LocalJobResult:
    """Run one training job in Docker through SageMaker local mode and return its outcome,
    shaped like the process backend's. A failing script is a Failed result with the reason
    the container wrote; LocalRunError means local mode itself could not run."""
    start = time.monotonic()
    if spec.distribution.type in ("smddp", "pytorchddp"):
        raise LocalRunError(
            f"distribution {spec.distribution.type} runs SMDDP, which needs "
            "NVIDIA GPUs (P4d/P4de/P5); locally use torch_distributed"
        )
    workdir = Path(workdir).resolve()
    job_dir = workdir / "docker-jobs" / job_name
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    stage, parser, started = S3Stage(spec.region), MetricParser(spec.metrics), []
    log = (job_dir / "job.log").open("w")

    def line(text: str) -> None:
        log.write(text + "\n")
        parser.feed(text)
        if not started and SCRIPT_STARTED in text:
            started.append(time.monotonic() - start)
        if on_line is not None:
            on_line(text)

    try:
        inputs, pool_state = _stage_inputs(spec, image, stage, workdir, job_dir / "input")
        hps = {**spec.hyperparameters, **(hyperparameters or {})}
        single = spec.model_copy(update={"tuning": None, "hyperparameters": hps})
        interruptions = 0
        while True:
            reclaim = _Reclaim(
                f"{job_name}-{uuid.uuid4().hex[:8]}",
                interrupt_after if interruptions == 0 else None,
                line,
            )
            result = _attempt(
                single,
                image,
                job_name,
                job_dir / f"attempt-{interruptions}",
                inputs,
                stage,
                reclaim,
            )
            if result is not None:
                break
            interruptions += 1
            line(
                f"[sm-toolkit] restarting {job_name} on fresh containers (attempt "
                f"{interruptions + 1})"
                + (
                    f"; checkpoints restore from {spec.checkpoint.s3_uri}"
                    if spec.checkpoint
                    else ", from scratch (no checkpoint configured)"
                )
            )
    finally:
        log.close()
    model_uri, output_uri = _publish(spec, job_name, result, job_dir, stage)
    return LocalJobResult(
        job_name,
        result.status,
        result.failure_reason,
        parser.final,
        parser.series,
        model_uri,
        output_uri,
        job_dir,
        job_dir / "job.log",
        time.monotonic() - start,
        started[0] if started else None,
        interruptions,
        pool_state,
    )


class _Reclaim:
    """A simulated spot reclaim: SIGTERM to every container labelled ``label`` once the
    script has run ``after`` seconds (never, when ``after`` is None)."""

    def __init__(self, label: str, after: float | None, line: Callable[[str], None]) -> None:
        self.label, self._after, self._line = label, after, line
        self._timer: threading.Timer | None = None
        self.done = False

    def __call__(self, text: str) -> None:
        self._line(text)
        if self._after is not None and self._timer is None and SCRIPT_STARTED in text:
            self._timer = threading.Timer(self._after, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        if kill_labelled(f"{JOB_LABEL}={self.label}"):
            self.done = True
            self._line(
                "[sm-toolkit] spot interruption: SIGTERM to every container, as a reclaim does"
            )

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()


def _attempt(
    spec: JobSpec,
    image: str,
    job_name: str,
    attempt_dir: Path,
    inputs: dict[str, str],
    stage: S3Stage,
    reclaim: _Reclaim,
) -> DockerJobResult | None:
    """One run of the job on fresh containers, checkpoints restored first and synced while
    it runs; None when a reclaim ended it."""
    from sm_toolkit.aws.sdk_v2 import build_local_estimator  # the SDK is heavy

    config: dict = {"labels": {JOB_LABEL: reclaim.label}}
    sync = None
    if spec.checkpoint is not None:
        folder = attempt_dir / "checkpoints"
        folder.mkdir(parents=True)
        sync = CheckpointSync(stage, spec.checkpoint.s3_uri, [folder])
        sync.restore()
        config["extends"] = _mount_file(attempt_dir, folder, spec.checkpoint.local_path)
        sync.start()
    try:
        result = run_job_docker(
            lambda session: build_local_estimator(spec, session, image),
            job_name=job_name,
            workdir=attempt_dir,
            inputs=inputs or None,
            region=spec.region,
            container_config=config,
            on_line=reclaim,
        )
    except LocalRunError:
        if not reclaim.done:
            raise
        result = None
    finally:
        reclaim.cancel()
        if sync is not None:
            sync.stop()
    return None if reclaim.done else result


def _mount_file(attempt_dir: Path, host_dir: Path, container_dir: str) -> dict[str, str]:
    """A compose file whose one service only mounts ``host_dir``, for every job service to
    ``extends``: compose merges its volumes with local mode's own."""
    path = attempt_dir / "checkpoint-mount.yaml"
    service = {"volumes": [f"{host_dir}:{container_dir}"]}
    path.write_text(yaml.safe_dump({"version": "2.3", "services": {"checkpoints": service}}))
    return {"file": str(path), "service": "checkpoints"}


def _stage_inputs(
    spec: JobSpec, image: str, stage: S3Stage, workdir: Path, target: Path
) -> tuple[dict[str, str], str | None]:
    """Every channel into a host folder (from a warm pool keyed on the image), as file://."""
    keyed = spec.model_copy(update={"image_uri": image})
    state = stage_channels(keyed, stage, workdir, target)
    return {c: f"file://{target / c}" for c in spec.inputs}, state


def _publish(
    spec: JobSpec, job_name: str, result: DockerJobResult, job_dir: Path, stage: S3Stage
) -> tuple[str | None, str | None]:
    """Unpack local mode's archives into ``job_dir`` (model/, output/, as /opt/ml has them)
    and upload model.tar.gz and output.tar.gz (output/data only, as SageMaker packs it)."""
    prefix = f"{spec.output_path.rstrip('/')}/{job_name}/output"
    uris: list[str | None] = [None, None]
    for i, (archive, sub) in enumerate(
        ((result.model_artifacts, "model"), (result.output_artifacts, "output"))
    ):
        if archive is None:
            continue
        with tarfile.open(archive) as tar:
            tar.extractall(job_dir / sub, filter="data")
        packed = job_dir / f"{sub}.tar.gz"
        source = job_dir / ("model" if sub == "model" else "output/data")
        source.mkdir(parents=True, exist_ok=True)
        with tarfile.open(packed, "w:gz") as tar:
            for path in sorted(source.rglob("*")):
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
        uris[i] = stage.upload_file(packed, f"{prefix}/{sub}.tar.gz")
    return uris[0], uris[1]
