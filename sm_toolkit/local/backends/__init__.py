"""Backends start and watch the hosts of a local job; the engine does everything else.

A backend lays out a folder per host (``Host.root`` stands for the host's file system),
starts each host with the job's launch contract (sagemaker-training's ``train``, or the
request's ContainerEntrypoint), streams each host's output lines, and on request delivers
SIGTERM to the training processes or kills everything the host started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sm_toolkit.local.hosts import Host
from sm_toolkit.local.plan import JobPlan

LineSink = Callable[[Host, str], None]


class HostProcess(Protocol):
    host: Host

    def poll(self) -> int | None:
        """The host's exit code once its main process has ended, else None."""

    def terminate(self) -> None:
        """SIGTERM to the training processes (StopTrainingJob, spot reclaim)."""

    def kill(self) -> None:
        """End every process the host started, at once."""

    def alive(self) -> bool:
        """Whether any process of the host is still running."""

    def close(self) -> None:
        """After the end: wait for the output to drain; release what the host held."""


class Backend(Protocol):
    name: str
    network_interface: str

    def check(self, plan: JobPlan) -> None:
        """Raise ConfigError (one line) for what this backend cannot run."""

    def layout(self, plan: JobPlan, job_dir: Path, attempt: int) -> list[Host]:
        """The job's hosts (fresh folders), host 0 first."""

    def start(self, plan: JobPlan, hosts: list[Host], on_line: LineSink) -> list[HostProcess]:
        """Start every host; return at once."""


def pump(stream, host: Host, on_line: LineSink, log_path: Path) -> threading.Thread:
    """A thread that copies a host's output stream, line by line, to its log and ``on_line``."""

    def run() -> None:
        with open(log_path, "a", encoding="utf-8", errors="replace") as log:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(text + "\n")
                log.flush()
                on_line(host, text)

    thread = threading.Thread(target=run, daemon=True, name=f"pump-{host.name}")
    thread.start()
    return thread


def get_backend(
    name: str, *, image: str | None = None, network: str | None = None, workers=None
) -> Backend:
    """The backend ``name``. ``network`` (docker only) is a Docker network of the user's that
    every host joins besides the job's own, e.g. where an MLflow server runs; ``workers``
    (process only) a ``worker.WorkerStock`` of spare started interpreters."""
    if name == "process":
        from sm_toolkit.local.backends.process import ProcessBackend

        if network is not None:
            from sm_toolkit.errors import ConfigError

            raise ConfigError("--network", network, "with --backend docker (a Docker network)")
        return ProcessBackend(workers)
    if name == "docker":
        from sm_toolkit.local.backends.docker import DockerBackend

        return DockerBackend(image=image, network=network)
    from sm_toolkit.errors import ConfigError

    raise ConfigError("--backend", name, "process or docker")
