"""Entry process of the sm-toolkit training image (standard library only).

The image's ENTRYPOINT runs ``tini -- python3 launcher.py ARGS``. This launcher starts the real
work as a child and stays its parent until it exits, for one reason: sagemaker-training's
``train`` installs no signal handlers, so a SIGTERM sent to it (StopTrainingJob, spot
interruption, ``docker stop``) kills ``train`` at once and leaves the user's script orphaned,
writing into a dead pipe (aws/sagemaker-training-toolkit #125, #173). Here the signal goes to
the processes ``train`` started (the script, torchrun or mpirun) and *not* to ``train``, which
keeps draining their output and then reports success or failure as usual. A second signal
goes to the whole process group.

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
from pathlib import Path

ENTRYPOINTS_DIR = Path(os.environ.get("SM_TOOLKIT_ENTRYPOINTS", "/opt/sm-toolkit/entrypoints"))
TRAIN_ENTRY = ("-m", "sm_toolkit.runtime.train_entry")
DRAIN_SECONDS = 120  # after a stop signal, how long the training processes may take to exit
FORWARDED = (signal.SIGTERM, signal.SIGINT)


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
    """Pids whose parent is ``pid`` (read from /proc, which every Linux container has)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we looked
            continue
        # Field 4 is the parent pid; split after the ")" that closes the command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class SignalForwarder:
    """Signal handler that passes SIGTERM/SIGINT on to the training processes."""

    def __init__(self, child: subprocess.Popen, is_train: bool) -> None:
        self.child = child
        self.is_train = is_train
        self.received = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if not self.is_train:
            # Any other command (SDK v3's ``bash -c sm_train.sh``): a shell in between would
            # die of the signal and leave the script unaware, so the whole group gets it.
            log(f"{name}: sending it to process group {self.child.pid}")
            self._send(lambda: os.killpg(self.child.pid, signum))
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


def wait_for(child: subprocess.Popen) -> int:
    """Wait for the child; as PID 1 (no tini) also reap every orphan re-parented to us."""
    if os.getpid() != 1:
        return child.wait()
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


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
    try:
        # A session of its own, so a second signal can reach the whole training tree at once.
        child = subprocess.Popen(command, start_new_session=True)
    except FileNotFoundError:
        log(f"command not found: {command[0]}")
        return 127
    forwarder = SignalForwarder(child, is_train)
    for sig in FORWARDED:
        signal.signal(sig, forwarder)
    rc = wait_for(child)
    if forwarder.received:
        drain(child.pid)
    # Shell convention for "killed by signal N", which is also what SageMaker reports.
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main())
