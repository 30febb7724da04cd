"""Kept interpreters for the process backend: a started Python with ``train``'s imports done.

A process host normally starts ``python -m sm_toolkit.runtime.train_entry``, which spends
most of its start-up importing sagemaker-training and the PyTorch toolkit. A *worker* is that
interpreter started ahead of time: it imports everything, then waits on a Unix socket (in
the abstract namespace: no file to clean up) for one job. The engine hands it the host's
environment, working folder and the write end of the host's output pipe; the worker takes
them as its own and runs ``train`` exactly as a fresh process would, then reports its exit
code and ends. A worker serves one job only, so no state leaks from one job to the next.

Workers come from two places:

* a warm pool (``ProcessBackend.keep_pool``): one per host, started when a job with
  KeepAlivePeriodInSeconds ends; it ends itself when the keep-alive runs out;
* a :class:`WorkerStock` of spares a local tuning job keeps for its trials (not a warm pool,
  and not reported as one), each ending itself if the tuner that made it goes.

    python -m sm_toolkit.local.backends.worker NAME UNTIL [PID CREATE_TIME]
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

import psutil

HANDOFF_TIMEOUT = 30.0  # a worker still importing answers once its imports are done


def running(pid: int, created: float) -> bool:
    """Whether the process ``pid`` started at ``created`` (psutil's create_time, so that a
    reused pid does not count) is still running."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Worker:
    """A started worker, as the engine (or a pool's metadata) remembers it."""

    pid: int
    created: float  # psutil's create_time: a reused pid is not mistaken for the worker
    address: str

    def alive(self) -> bool:
        return running(self.pid, self.created)

    def end(self) -> None:
        """Kill the worker (an unused one; a worker running a job ends with its host)."""
        if not self.alive():
            return
        for kill in (os.killpg, os.kill):  # its group; itself, if it has no group of its own yet
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def to_dict(self) -> dict:
        return {"pid": self.pid, "created": self.created, "address": self.address}

    @classmethod
    def from_dict(cls, data: dict) -> Worker:
        return cls(int(data["pid"]), float(data["created"]), str(data["address"]))


def start_worker(until: float, *, watch_this_process: bool = False) -> Worker:
    """Start a worker that waits for a job until ``until`` (unix time), or, with
    ``watch_this_process``, until the calling process ends. Returns at once; the worker
    imports in the background. It is started through ``sh ... &`` so that it is nobody's
    child: a warm pool outlives the sm-toolkit process that made it."""
    address = f"sm-toolkit-worker-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH", "LANG")} | {
        "PYTHONUNBUFFERED": "1"
    }
    args = [sys.executable, "-u", "-m", __name__, address, repr(until)]
    if watch_this_process:
        me = psutil.Process()
        args += [str(me.pid), repr(me.create_time())]
    out = subprocess.run(
        ["/bin/sh", "-c", f"{shlex.join(args)} </dev/null >/dev/null 2>&1 & echo $!"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:  # ended at once (cannot import): a Worker that is never alive
        created = -1.0
    return Worker(pid, created, address)


class HandedOff:
    """A job's host running in a worker; looks like the ``Popen`` of a fresh host process
    to the process backend (``pid``, ``poll``, ``wait``)."""

    def __init__(self, worker: Worker, conn: socket.socket) -> None:
        self.pid = worker.pid
        self._worker, self._conn = worker, conn
        self._code: int | None = None
        self._ended = threading.Event()
        threading.Thread(target=self._read_exit, daemon=True).start()

    def _read_exit(self) -> None:
        try:
            self._conn.settimeout(None)
            data = self._conn.recv(4096)
            self._code = int(json.loads(data)["exit"]) if data else None
        except (OSError, ValueError, KeyError):
            self._code = None
        finally:
            self._conn.close()
            if self._code is None:  # the connection went without a code: the worker was killed
                while self._worker.alive():
                    time.sleep(0.05)
                self._code = -9
            self._ended.set()

    def poll(self) -> int | None:
        return self._code if self._ended.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._ended.wait(timeout)
        return self.poll()


def hand_off(worker: Worker, env: dict[str, str], cwd: str, output_fd: int) -> HandedOff | None:
    """Give ``worker`` a host's job; None when the worker cannot take it (gone, expired)."""
    if not worker.alive():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(HANDOFF_TIMEOUT)
        _connect(conn, worker)
        payload = json.dumps({"env": env, "cwd": cwd}).encode()
        socket.send_fds(conn, [payload], [output_fd])
        if json.loads(conn.recv(4096)).get("pid") != worker.pid:
            raise OSError("the worker did not take the job")
    except (OSError, ValueError):
        conn.close()
        worker.end()
        return None
    return HandedOff(worker, conn)


def _connect(conn: socket.socket, worker: Worker) -> None:
    """Connect, waiting while a just-started worker has not bound its socket yet."""
    deadline = time.monotonic() + HANDOFF_TIMEOUT
    while True:
        try:
            conn.connect("\0" + worker.address)
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline or not worker.alive():
                raise
            time.sleep(0.01)


class WorkerStock:
    """Spare workers for a run of jobs in this process (a local tuning job's trials): each
    one taken is replaced at once, so the next job finds one with its imports done."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._spares: list[Worker] = []
        self._closed = False

    def __enter__(self) -> WorkerStock:
        with self._lock:
            self._spares = [self._new() for _ in range(self.size)]
        return self

    def _new(self) -> Worker:
        return start_worker(time.time() + 24 * 3600, watch_this_process=True)

    def take(self) -> Worker | None:
        with self._lock:
            if self._closed:
                return None
            self._spares = [w for w in self._spares if w.alive()]
            worker = self._spares.pop(0) if self._spares else None
            self._spares.append(self._new())
            return worker

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
        for worker in spares:
            worker.end()


# -- the worker process ------------------------------------------------------------------
def _serve(address: str, until: float, parent: tuple[int, float] | None) -> int:
    os.setsid()  # its own process group, ended as a host is
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind("\0" + address)  # bound before the imports: a job may connect at once
    listener.listen(1)
    from sm_toolkit.runtime import train_entry

    train_entry.preload()
    while True:
        left = until - time.time()
        if left <= 0 or (parent is not None and not running(*parent)):  # its tuner is gone
            return 0
        listener.settimeout(min(left, 1.0))
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        try:
            conn.settimeout(HANDOFF_TIMEOUT)
            payload, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 1)
            job = json.loads(payload)
        except (OSError, ValueError):
            conn.close()
            continue
        listener.close()
        return _run_job(conn, job, fds[0], train_entry)


def _run_job(conn: socket.socket, job: dict, output_fd: int, train_entry) -> int:
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    conn.sendall(json.dumps({"pid": os.getpid()}).encode())
    code = 1
    try:
        train_entry.main()
        code = 0
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001 - the host's log gets it, as a fresh process's would
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.sendall(json.dumps({"exit": code}).encode())
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":
    watched = (int(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) > 4 else None
    sys.exit(_serve(sys.argv[1], float(sys.argv[2]), watched))
