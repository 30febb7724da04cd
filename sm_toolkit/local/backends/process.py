"""The process backend: each host is a process tree on this machine, no Docker.

A host runs the launch contract of the request: sagemaker-training's ``train`` (through
``sm_toolkit.runtime.train_entry``, as the image does) with ``SAGEMAKER_BASE_DIR`` at the host's
relocated /opt/ml, or the request's ContainerEntrypoint with its container paths translated.
Every process a host starts carries a marker in its environment, so the ones that outlive
the script (an orphan, a daemon that left the session) are found and ended with the host.
``train`` may run in a worker started ahead of time (``worker.py``): a warm pool's, or a
tuning job's spare; it runs the same code in the same environment, minus the start-up.
One host is named ``algo-1`` (the DNS wait is skipped); several are 127.0.0.1 ... 127.0.0.N,
each a loopback address of this machine, with the rendezvous port chosen per job.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.local.backends import LineSink, pump
from sm_toolkit.local.backends.worker import Worker, WorkerStock, hand_off, start_worker
from sm_toolkit.local.hosts import Host, container_env, translator, write_opt_ml
from sm_toolkit.local.plan import JobPlan
from sm_toolkit.runtime.launcher import ChildlessWatch

TRAIN_COMMAND = (sys.executable, "-m", "sm_toolkit.runtime.train_entry")


class ProcessBackend:
    name = "process"
    network_interface = "lo"

    def __init__(self, workers: WorkerStock | None = None) -> None:
        self._stock = workers  # spares a tuning job keeps for its trials (not a warm pool)
        self._kept: dict[str, Worker] = {}  # a warm pool's workers, by host name
        self._ran_train = False

    def check(self, plan: JobPlan) -> None:
        dist = plan.distribution
        if dist in ("smddp", "pytorchddp"):
            raise ConfigError(
                "HyperParameters." + contract.HP_SMDDP,
                "true",
                f"{dist} runs SMDDP, which needs NVIDIA GPUs (P4d/P4de/P5); "
                "locally use torch_distributed",
            )
        if dist == "mpi":
            raise ConfigError(
                "HyperParameters." + contract.HP_MPI,
                "true",
                "mpi needs sshd and mpirun between hosts; use --backend docker, "
                "or torch_distributed",
            )

    def layout(self, plan: JobPlan, job_dir: Path, attempt: int) -> list[Host]:
        names = contract.host_names(plan.instance_count)
        hosts = []
        for i, name in enumerate(names):
            address = name if len(names) == 1 else f"127.0.0.{i + 1}"
            root = job_dir / f"attempt-{attempt}" / name
            root.mkdir(parents=True, exist_ok=True)
            hosts.append(Host(name, address, root, job_dir / f"{name}.log"))
        return hosts

    def prepare(self, plan: JobPlan, hosts: list[Host], hyperparameters: dict[str, str]) -> None:
        for host in hosts:
            translate = translator(host, plan)
            hps = {k: translate(v) for k, v in hyperparameters.items()}
            write_opt_ml(host, plan, hosts, hps, self.network_interface)
            if not plan.launch.is_train:
                _translate_drivers(host, translate, hosts)

    # Warm pools: a process host keeps its cache folder (warm_pool.py) and a started
    # interpreter with train's imports done (worker.py), which the next matching job takes.
    def adopt_pool(self, pool) -> None:
        kept = (pool.kept or {}).get("workers") or {}
        self._kept = {host: Worker.from_dict(data) for host, data in kept.items()}

    def keep_pool(self, pool, hosts: list[Host], keep_alive_seconds: int) -> dict:
        if not self._ran_train:  # SDK v3's entrypoint contract starts bash, not train
            return {}
        until = time.time() + keep_alive_seconds
        return {"workers": {h.name: start_worker(until).to_dict() for h in hosts}}

    def end_pool(self, pool) -> None:
        for data in ((pool.kept or {}).get("workers") or {}).values():
            Worker.from_dict(data).end()

    def finish(self, keep: bool) -> None:
        for worker in self._kept.values():  # taken from a pool and not used: ends here
            worker.end()
        self._kept = {}

    def attach_cache(self, hosts: list[Host], pool) -> None:
        """The pool's persistent cache folder, at its container path on every host."""
        for host in hosts:
            target = host.path(contract.WARMPOOL_CACHE_PATH)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(pool.cache_dir(host.name), target_is_directory=True)

    def start(self, plan: JobPlan, hosts: list[Host], on_line: LineSink) -> list[_ProcessHost]:
        port = _free_port() if len(hosts) > 1 else None
        self._ran_train = plan.launch.is_train
        started = []
        for host in hosts:
            translate = translator(host, plan)
            token = uuid.uuid4().hex
            env = _host_env(plan, host, port, token, single=len(hosts) == 1)
            env = {k: translate(v) for k, v in env.items()}
            proc, stream = (self._in_worker(host, env) if plan.launch.is_train else None) or (
                self._fresh(plan, host, env, translate)
            )
            reader = pump(stream, host, on_line, host.log_path)
            started.append(_ProcessHost(host, proc, token, reader, keep_main=plan.launch.is_train))
        return started

    def _fresh(self, plan: JobPlan, host: Host, env: dict, translate):
        command = (
            list(TRAIN_COMMAND)
            if plan.launch.is_train
            else [translate(a) for a in plan.launch.entrypoint]
        )
        proc = subprocess.Popen(
            command,
            cwd=host.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return proc, proc.stdout

    def _in_worker(self, host: Host, env: dict):
        """The host's ``train`` in a started worker (the pool's, else a spare), if one takes
        it: (the worker as a process, the read end of its output)."""
        worker = self._kept.pop(host.name, None) or (self._stock and self._stock.take())
        if worker is None:
            return None
        read_end, write_end = os.pipe()
        try:
            proc = hand_off(worker, env, str(host.root), write_end)
        finally:
            os.close(write_end)
        if proc is None:
            os.close(read_end)
            return None
        return proc, os.fdopen(read_end, "rb")


def _host_env(plan: JobPlan, host: Host, port: int | None, token: str, *, single: bool):
    env = container_env(plan, port)
    site = host.path("/usr/local/sm-toolkit-site")  # a user's requirements.txt goes here
    site.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]),
            "HOME": os.environ.get("HOME", str(host.root)),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p
            ),
            "PIP_TARGET": str(site),
            "GLOO_SOCKET_IFNAME": "lo",
            contract.BASE_DIR_ENV: contract.OPT_ML,
            contract.HOST_TOKEN_ENV: token,
        }
    )
    env.setdefault(contract.TRAINING_MODULE_ENV, contract.PYTORCH_TRAINING_MODULE)
    if single:  # algo-1 is in no DNS here: skip sagemaker-training's 15-minute wait for it
        env[contract.STUDIO_LOCAL_MODE_ENV] = "true"
    return env


# SDK v3's environment.py fixes the rendezvous at algo-1:7777, a name only containers
# resolve and a port two jobs on one machine would share.
_V3_MASTER_ADDR = re.compile(r"^SM_MASTER_ADDR = [\"']algo-1[\"']$", re.M)
_V3_MASTER_PORT = re.compile(r"^SM_MASTER_PORT = 7777$", re.M)


def _translate_drivers(host: Host, translate, hosts: list[Host]) -> None:
    """SDK v3's driver scripts (the sm_drivers channel) name /opt/ml paths; on this machine
    they are the host's relocated paths. With several hosts, their master is the first
    host's loopback address and the job's own port (``SM_TOOLKIT_MASTER_PORT``)."""
    drivers = host.opt_ml / contract.INPUT_DATA_DIR / contract.V3_DRIVERS_CHANNEL
    rendezvous = len(hosts) == 1 or not drivers.is_dir()  # not v3's drivers: as they are
    for path in drivers.rglob("*"):
        if path.is_file() and path.suffix in (".sh", ".py", ".json"):
            text = path.read_text()
            new = translate(text)
            if len(hosts) > 1 and _V3_MASTER_ADDR.search(new):
                new = _V3_MASTER_ADDR.sub(f'SM_MASTER_ADDR = "{hosts[0].address}"', new)
                new = _V3_MASTER_PORT.sub(
                    f'SM_MASTER_PORT = int(os.environ.get("{contract.MASTER_PORT_ENV}", '
                    f'"{contract.DEFAULT_MASTER_PORT}"))',
                    new,
                )
                rendezvous = True
            if new != text:
                path.unlink()  # a hard link shared with another host: write a copy
                path.write_text(new)
    if not rendezvous:
        raise ConfigError(
            f"InputDataConfig.{contract.V3_DRIVERS_CHANNEL}",
            "scripts/environment.py",
            "with several instances on the process backend, SDK v3's drivers as v3 writes "
            "them (SM_MASTER_ADDR = 'algo-1', pointed here at 127.0.0.1); others need "
            "--backend docker",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ProcessHost:
    def __init__(self, host: Host, proc, token: str, reader, *, keep_main: bool) -> None:
        self.host, self._proc, self._token, self._reader = host, proc, token, reader
        self._keep_main = keep_main  # `train` keeps draining output and reports; spare it
        self._checked = 0.0
        self._childless = ChildlessWatch(proc.pid)

    def poll(self) -> int | None:
        code = self._proc.poll()
        if code is None and self._keep_main:
            self._end_detached()
        return code

    def _end_detached(self) -> None:
        """``train`` reads the script's output until EOF, so a process that left the script's
        tree (a daemon) but keeps that pipe open would hold the job open forever. Once
        ``train`` has had no children for a while, the script is done: end what is left."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        if self._childless.expired():
            for proc in self._tree(everywhere=True):
                _send(proc, signal.SIGKILL)

    def _tree(self, *, everywhere: bool = False) -> list[psutil.Process]:
        found = []
        try:
            found = psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        if everywhere:  # daemons leave the tree but keep the marker
            known = {p.pid for p in found}
            for p in psutil.process_iter():
                if p.pid not in known and p.pid != self._proc.pid and self._marked(p):
                    found.append(p)
        return found

    def _marked(self, proc: psutil.Process) -> bool:
        try:
            return proc.environ().get(contract.HOST_TOKEN_ENV) == self._token
        except (psutil.Error, OSError):
            return False

    def terminate(self) -> None:
        if self._proc.poll() is not None:  # the host already ended; kill() clears what is left
            return
        targets = [p for p in self._tree() if not _pass_through(p)]
        if not targets:  # nothing started yet: the host's own process is all there is
            try:
                targets.append(psutil.Process(self._proc.pid))
            except psutil.NoSuchProcess:
                pass
        for p in targets:
            _send(p, signal.SIGTERM)

    def kill(self) -> None:
        for p in self._tree(everywhere=True):
            _send(p, signal.SIGKILL)
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def alive(self) -> bool:
        return self._proc.poll() is None or bool(
            [p for p in self._tree(everywhere=True) if p.is_running()]
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.wait()
        self._reader.join(timeout=10)


def _pass_through(proc: psutil.Process) -> bool:
    try:
        return contract.is_pass_through(proc.cmdline())
    except psutil.Error:
        return False


def _send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass
