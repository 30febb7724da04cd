"""Start sagemaker-training's ``train`` for every host of a local job and watch them.

Each host runs in its own process group so a stop reaches every process of that host,
the way SageMaker signals a container: SIGTERM (StopTrainingJob, spot reclaim), then
SIGKILL after a grace period. Output lines are streamed to a log file per host and to a
callback, as SageMaker streams container logs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sm_toolkit.errors import LocalRunError
from sm_toolkit.local.hosts import Host

STOP_GRACE_SECONDS = 30  # SageMaker waits 120 s; locally a checkpoint takes far less
SCRIPT_STARTED = "Invoking script with the following command"  # sagemaker-training's log


@dataclass(frozen=True)
class HostsOutcome:
    return_codes: list[int]
    stopped: bool  # the caller asked to stop (StopTrainingJob)
    interrupted: bool  # a simulated spot reclaim hit the job


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


def run_hosts(
    hosts: list[Host],
    *,
    on_line: Callable[[str], None],
    stop_event: threading.Event | None = None,
    interrupt_after: float | None = None,
) -> HostsOutcome:
    """Run ``train`` on every host until all exit; stop or interrupt them on request.

    ``interrupt_after`` counts from the moment the training script starts (the launcher's
    own start-up varies with the machine's load; a test wants the reclaim mid-training)."""
    procs = [
        subprocess.Popen(
            train_command(),
            cwd=h.base,
            env=h.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        for h in hosts
    ]
    prefix = len(hosts) > 1
    script_started = threading.Event()
    readers = [
        threading.Thread(target=_pump, args=(p, h, on_line, prefix, script_started), daemon=True)
        for p, h in zip(procs, hosts, strict=True)
    ]
    for r in readers:
        r.start()
    deadline = None
    stopped = interrupted = False
    while any(p.poll() is None for p in procs) or any(r.is_alive() for r in readers):
        if interrupt_after is not None and deadline is None and script_started.is_set():
            deadline = time.monotonic() + interrupt_after
        if stop_event is not None and stop_event.is_set() and not (stopped or interrupted):
            stopped = True
            _terminate(procs)
        elif deadline is not None and time.monotonic() >= deadline and not (stopped or interrupted):
            interrupted = True
            on_line("[sm-toolkit] spot interruption: SIGTERM to every host, as a reclaim does")
            _terminate(procs)
        time.sleep(0.1)
    return HostsOutcome([p.wait() for p in procs], stopped, interrupted)


def _pump(
    proc: subprocess.Popen, host: Host, on_line, prefix: bool, script_started: threading.Event
) -> None:
    assert proc.stdout is not None
    with open(host.log_path, "a") as log:
        for line in proc.stdout:
            log.write(line)
            text = line.rstrip("\n")
            if SCRIPT_STARTED in text:
                script_started.set()
            on_line(f"{host.name} | {text}" if prefix else text)


def _terminate(procs: list[subprocess.Popen]) -> None:
    """SIGTERM the training processes of each host (not the launcher, which keeps draining
    their output, unlike a bare SageMaker container: toolkit issues #125, #173); SIGKILL
    each host's whole process group if it has not exited after the grace period."""
    import psutil

    for p in procs:
        try:
            children = psutil.Process(p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        if not children:  # no script yet: the launcher is all there is to stop
            _signal_group(p, signal.SIGTERM)
        for child in children:
            try:
                child.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass

    def reap() -> None:
        end = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < end and any(_group_alive(p) for p in procs):
            time.sleep(0.2)
        for p in procs:
            _signal_group(p, signal.SIGKILL)

    threading.Thread(target=reap, daemon=True).start()


def _group_alive(proc: subprocess.Popen) -> bool:
    try:
        os.killpg(proc.pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
