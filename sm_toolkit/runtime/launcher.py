"""Entry process of the sm-toolkit training image (standard library only).

The image's ENTRYPOINT runs ``tini -- python3 launcher.py ARGS``. This launcher starts the real
work as a child and stays its parent until it exits, for one reason: sagemaker-training's
``train`` installs no signal handlers, so a SIGTERM sent to it (StopTrainingJob, spot
interruption, ``docker stop``) kills ``train`` at once and leaves the user's script orphaned,
writing into a dead pipe (aws/sagemaker-training-toolkit #125, #173). Here the signal goes to
the processes ``train`` started (the script, torchrun or mpirun) and *not* to ``train``, which
keeps draining their output and then reports success or failure as usual. A second signal
goes to the whole process group.

``train`` also reads the script's output until every holder of that pipe has closed it, so
a daemon the script left behind (one that left its process group) would hold the job open
for ever. Every process the launcher starts carries a token in its environment; once
``train`` has had no child for a while, the script is done, and what still carries the
token is ended (the local engine's process backend does the same on the laptop).

ARGS:
  ``train [...]``   the SageMaker contract (``docker run IMAGE train``), through train_entry.py
  ``NAME [...]``    NAME or NAME.py found in the baked-in entrypoints folder: run it with python
  anything else     run as given (``bash``, ``python -c ...``, ``torchrun ...``)
  nothing           same as ``train``
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sm_toolkit import contract  # standard library only, like this module

ENTRYPOINTS_DIR = Path(os.environ.get("SM_TOOLKIT_ENTRYPOINTS", "/opt/sm-toolkit/entrypoints"))
TRAIN_ENTRY = ("-m", "sm_toolkit.runtime.train_entry")
DRAIN_SECONDS = 120  # after a stop signal, how long the training processes may take to exit
FORWARDED = (signal.SIGTERM, signal.SIGINT)
TOKEN_ENV = contract.LAUNCH_TOKEN_ENV


def log(msg: str) -> None:
    print(f"sm-toolkit launcher: {msg}", file=sys.stderr, flush=True)


def baked_entrypoint(name: str) -> Path | None:
    """The entrypoint file that ``name`` refers to, if the image has one by that name."""
    if "/" in name:
        return None
    for candidate in (name, f"{name}.py"):
        path = ENTRYPOINTS_DIR / candidate
        if path.is_file():
            return path
    return None


def read_hyperparameters(base_dir: Path) -> dict[str, object]:
    """hyperparameters.json decoded like sagemaker-training does (JSON per value, else raw)."""
    path = base_dir / "input" / "config" / "hyperparameters.json"
    if not path.is_file():
        return {}
    decoded: dict[str, object] = {}
    for key, raw in json.loads(path.read_text()).items():
        try:
            decoded[key] = json.loads(raw)
        except (TypeError, ValueError):
            decoded[key] = raw
    return decoded


def stage_baked_code(base_dir: Path) -> None:
    """Let ``train`` run one of the image's entrypoints when no code was sent with the job.

    With ``sagemaker_program=train_cnn.py`` and no ``sagemaker_submit_directory``, the toolkit
    looks for the script in ``<base>/code``; copying the baked-in entrypoints there is what the
    folder is for, and it is skipped whenever the job brings code of its own.
    """
    hps = read_hyperparameters(base_dir)
    program = os.environ.get("SAGEMAKER_PROGRAM") or hps.get("sagemaker_program")
    code_dir = base_dir / "code"
    if not program or "sagemaker_submit_directory" in hps:
        return
    if baked_entrypoint(str(program)) is None:
        return
    if code_dir.is_dir() and any(code_dir.iterdir()):
        return
    shutil.copytree(ENTRYPOINTS_DIR, code_dir, dirs_exist_ok=True)
    log(f"no code sent with the job: using the image's {ENTRYPOINTS_DIR} for {program}")


def build_command(argv: list[str]) -> tuple[list[str], bool]:
    """The child's command line and whether it is the toolkit's ``train``."""
    if not argv or argv[0] == "train":
        stage_baked_code(Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")))
        return [sys.executable, *TRAIN_ENTRY, *argv[1:]], True
    entry = baked_entrypoint(argv[0])
    if entry is not None:
        return [sys.executable, str(entry), *argv[1:]], False
    return argv, False


def children_of(pid: int) -> list[int]:
    """Running processes whose parent is ``pid`` (from /proc, which every container has)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we looked
            continue
        # Fields 3 and 4 are the state and the parent pid; split after the ")" that closes
        # the command name. A zombie (exited, not yet waited for) is no longer running.
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def group_members(group: int) -> list[int]:
    """Pids of the processes in a process group (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == group:
                found.append(int(entry.name))
    return found


def _pass_through(pid: int) -> bool:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return contract.is_pass_through([c.decode(errors="replace") for c in cmdline if c])


class SignalForwarder:
    """Signal handler that passes SIGTERM/SIGINT on to the training processes."""

    def __init__(self, child: subprocess.Popen, is_train: bool) -> None:
        self.child = child
        self.is_train = is_train
        self.received = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if not self.is_train and self.received == 1:
            # Any other command (SDK v3's ``bash -c sm_train.sh``): the shell and v3's driver
            # only pipe the output, so the signal goes to the rest of the group (the script).
            targets = [p for p in group_members(self.child.pid) if not _pass_through(p)]
            log(f"{name}: forwarding to {targets or [self.child.pid]}")
            for pid in targets or [self.child.pid]:
                self._send(lambda pid=pid: os.kill(pid, signum))
            return
        targets = children_of(self.child.pid)
        if self.received > 1 or not targets:
            # Nothing started yet, or asked twice: stop everything in the child's group.
            log(f"{name}: sending it to process group {self.child.pid}")
            self._send(lambda: os.killpg(self.child.pid, signum))
            return
        log(f"{name}: forwarding to {targets}; waiting for them to finish")
        for pid in targets:
            self._send(lambda pid=pid: os.kill(pid, signum))

    @staticmethod
    def _send(action) -> None:
        try:
            action()
        except ProcessLookupError:  # already gone
            pass


def carrying(token: str) -> list[int]:
    """Pids whose environment holds this launch's token (from /proc)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _reaped(child: subprocess.Popen) -> int | None:
    """The child's exit code once it has ended; as PID 1 (no tini) reap every orphan too."""
    if os.getpid() != 1:
        return child.poll()
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return child.poll()
        if pid == 0:
            return None
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


class ChildlessWatch:
    """Whether ``train`` (``pid``) has been without a running child for
    DETACHED_GRACE_SECONDS: its script has ended, so what it left running is to end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._since: float | None = None

    def expired(self) -> bool:
        import time

        if children_of(self.pid):
            self._since = None
            return False
        now = time.monotonic()
        if self._since is None:
            self._since = now
            return False
        return now - self._since > contract.DETACHED_GRACE_SECONDS


def wait_for(child: subprocess.Popen, token: str | None = None) -> int:
    """Wait for the child. With ``token`` (``train``), end what the script left detached once
    ``train`` has been without a child for DETACHED_GRACE_SECONDS."""
    import time

    watch = ChildlessWatch(child.pid)
    while True:
        rc = _reaped(child)
        if rc is not None:
            return rc
        if token is not None and watch.expired():
            for pid in carrying(token):
                if pid != child.pid:
                    log(f"the script has ended; ending {pid}, which it left running")
                    SignalForwarder._send(lambda pid=pid: os.kill(pid, signal.SIGKILL))
        time.sleep(0.2)


def drain(group: int, seconds: float = DRAIN_SECONDS) -> None:
    """After a stop signal, let the rest of the child's process group finish (a script whose
    shell already exited may still be writing its checkpoint) before the container ends."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return
        if os.getpid() == 1:  # nobody else reaps here
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    command, is_train = build_command(sys.argv[1:] if argv is None else argv)
    token = uuid.uuid4().hex
    try:
        # A session of its own, so a second signal can reach the whole training tree at once.
        env = {**os.environ, TOKEN_ENV: token}
        child = subprocess.Popen(command, start_new_session=True, env=env)
    except FileNotFoundError:
        log(f"command not found: {command[0]}")
        return 127
    forwarder = SignalForwarder(child, is_train)
    for sig in FORWARDED:
        signal.signal(sig, forwarder)
    rc = wait_for(child, token if is_train else None)
    if forwarder.received:
        drain(child.pid)
    # Shell convention for "killed by signal N", which is also what SageMaker reports.
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main())
