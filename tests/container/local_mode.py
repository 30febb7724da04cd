"""Test support: run the training image through the SageMaker SDK v2's own local mode.

The image must keep working under the SDK's local mode (``LocalSession``, docker compose), as
users run it; sm-toolkit's own docker backend drives containers itself. This is the harness.

The SDK's own local mode does the work (docker compose, one container per host, /opt/ml
laid out and mounted, model.tar.gz / output.tar.gz collected). This module only makes it run
offline and tell the caller why a job failed:

* a ``LocalSession`` with fake credentials, telemetry opted out and ``local.local_code: true``
  (the code is mounted, not uploaded), and ``file://`` outputs: no AWS API call at all;
* the compose network ``sagemaker-local`` created beforehand as an *internal* network (compose
  reuses a network of that name). A dockerd with iptables enforces that with its own rules;
  one started with ``--iptables=false`` (as in CI) does not, so where the bridge is on this
  host and writable, IPv4 forwarding is also switched off for it: the containers still reach
  each other and the bridge's own address, and nothing beyond this machine;
* the failure file the container wrote (``output/failure`` in output.tar.gz) read back, since
  the SDK itself only raises "Failed to run: <compose command>".
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import LocalRunError

LOCAL_NETWORK = "sagemaker-local"  # the network name in the SDK's compose file
FAILURE_REASON_LIMIT = 1024  # SageMaker keeps this much of /opt/ml/output/failure
OFFLINE_SDK_CONFIG = contract.SDK_TELEMETRY_OPT_OUT


@dataclass(frozen=True)
class DockerJobResult:
    """What a local-mode job left behind."""

    job_name: str
    status: str  # Completed | Failed
    failure_reason: str | None
    model_artifacts: Path | None  # model.tar.gz on this machine
    output_artifacts: Path | None  # output.tar.gz (success/failure files, output/data)
    seconds: float
    containers: tuple[str, ...] = ()  # left in place only with keep_containers=True


def offline_local_session(
    *,
    region: str = "us-east-1",
    container_root: Path | None = None,
    container_config: dict[str, Any] | None = None,
):
    """A ``LocalSession`` that needs neither AWS credentials nor network access.
    ``container_config`` is merged into every compose service (keys other than the ones
    local mode sets itself: its ``volumes`` would be replaced, ``extends`` is merged)."""
    import boto3
    from sagemaker.local import LocalSession

    boto_session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",
        region_name=region,
    )
    session = LocalSession(boto_session=boto_session, sagemaker_config=OFFLINE_SDK_CONFIG)
    local: dict[str, Any] = {"local_code": True}
    if container_root is not None:
        container_root.mkdir(parents=True, exist_ok=True)
        local["container_root"] = str(container_root)
    if container_config:
        local["container_config"] = container_config
    session.config = {"local": local}
    return session


def ensure_internal_network(name: str = LOCAL_NETWORK) -> Path | None:
    """Make the compose network ``--internal`` unless it exists so, and stop the host from
    forwarding its traffic; returns the bridge's forwarding switch when it could set it."""
    found = _docker("network", "inspect", "-f", "{{.Internal}}", name, check=False)
    if found.returncode != 0:
        _docker(
            "network",
            "create",
            "--internal",
            "--label",
            f"com.docker.compose.network={name}",
            name,
        )
    elif found.stdout.strip() != "true":
        raise LocalRunError(
            f"docker network {name} exists and can reach outside this machine; "
            f"remove it (docker network rm {name}) so it is made internal"
        )
    return _stop_forwarding(name)


def bridge_forwarding_switch(name: str = LOCAL_NETWORK) -> Path:
    """/proc switch for IPv4 forwarding of the network's bridge (``br-<id[:12]>`` by default)."""
    info = json.loads(_docker("network", "inspect", "-f", "{{json .}}", name).stdout)
    bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name")
    bridge = bridge or f"br-{info['Id'][:12]}"
    return Path("/proc/sys/net/ipv4/conf") / bridge / "forwarding"


def _stop_forwarding(name: str) -> Path | None:
    switch = bridge_forwarding_switch(name)
    try:
        switch.write_text("0")
    except OSError:  # Docker in a VM (Docker Desktop), or not root: iptables must do it there
        return None
    return switch


def run_job_docker(
    estimator_factory: Callable[[Any], Any],
    *,
    job_name: str,
    workdir: Path,
    inputs: dict[str, str] | None = None,
    region: str = "us-east-1",
    keep_containers: bool = False,
    container_config: dict[str, Any] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> DockerJobResult:
    """Run one job in Docker through SageMaker local mode and return its outcome.

    ``estimator_factory(session)`` must return an SDK v2 estimator built on that session with
    ``instance_type="local"``, ``image_uri`` set to the training image and a full role ARN.
    Its ``output_path`` is replaced by ``file://<workdir>/<job_name>/``. ``inputs`` maps channel
    names to ``file://`` URIs. A failing script gives status Failed with the reason the
    container wrote, not an exception; LocalRunError means local mode itself could not run.
    The stopped containers compose leaves behind are removed unless ``keep_containers``.
    ``on_line`` gets each line of the compose log (ANSI colours stripped) as it arrives.
    """
    ensure_internal_network()
    job_dir = (workdir / job_name).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    container_root = workdir.resolve() / "containers"
    session = offline_local_session(
        region=region, container_root=container_root, container_config=container_config
    )
    compose_files_before = set(container_root.glob("*/docker-compose.yaml"))
    estimator = estimator_factory(session)
    estimator.output_path = f"file://{job_dir}/"
    start = time.monotonic()
    failed: RuntimeError | None = None
    try:
        with _compose_log(on_line):
            estimator.fit(inputs=inputs, job_name=job_name, wait=True)
    except RuntimeError as err:  # the SDK's "Failed to run: docker-compose ..." and nothing else
        failed = err
    seconds = time.monotonic() - start
    new_files = set(container_root.glob("*/docker-compose.yaml")) - compose_files_before
    containers = tuple(name for path in sorted(new_files) for name in _container_names(path))
    if not keep_containers and containers:
        _docker("rm", "-f", *containers, check=False)
    model = job_dir / "model.tar.gz"
    output = job_dir / "output.tar.gz"
    reason = failure_reason(output) if output.is_file() else None
    if failed is not None and reason is None:
        raise LocalRunError(f"local mode failed before the job wrote a failure file: {failed}")
    return DockerJobResult(
        job_name=job_name,
        status="Failed" if failed is not None else "Completed",
        failure_reason=reason if failed is not None else None,
        model_artifacts=model if model.is_file() else None,
        output_artifacts=output if output.is_file() else None,
        seconds=seconds,
        containers=containers if keep_containers else (),
    )


class _LineSplitter:
    """A write-only text stream that hands complete lines to a callback."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._on_line(self._ANSI.sub("", line).rstrip("\r"))
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def _compose_log(on_line: Callable[[str], None] | None):
    """Route the compose log to ``on_line``: local mode writes each line it reads from
    ``docker compose up`` to ``sys.stdout`` (``sagemaker.local.image._stream_output``) and
    offers no other hook."""
    if on_line is None:
        yield
        return
    splitter = _LineSplitter(on_line)
    with contextlib.redirect_stdout(splitter):
        yield
    if splitter._buffer:
        splitter.write("\n")


def kill_labelled(label: str, signal: str = "TERM") -> list[str]:
    """Send ``signal`` to every running container carrying ``label`` (``key=value``), as a
    spot reclaim does to every instance; returns their ids."""
    found = _docker("ps", "-q", "--filter", f"label={label}", check=False)
    ids = found.stdout.split()
    if ids:
        _docker("kill", "--signal", signal, *ids, check=False)
    return ids


def failure_reason(output_tar: Path) -> str | None:
    """The ``failure`` file in output.tar.gz, cut to what SageMaker would show."""
    with tarfile.open(output_tar) as tar:
        for member in tar.getmembers():
            if Path(member.name).name == "failure" and member.isfile():
                data = tar.extractfile(member)
                text = data.read().decode("utf-8", "replace") if data else ""
                return text[:FAILURE_REASON_LIMIT]
    return None


def _container_names(compose_file: Path) -> list[str]:
    """The container names local mode gave its hosts (from the compose file it wrote)."""
    import yaml

    services = (yaml.safe_load(compose_file.read_text()) or {}).get("services", {})
    return [svc["container_name"] for svc in services.values() if "container_name" in svc]


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as err:
        raise LocalRunError("docker CLI not found; install Docker (see .ci/docker.sh)") from err
    if check and done.returncode != 0:
        raise LocalRunError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done
