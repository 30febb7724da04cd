"""The docker backend: each host is a container of the training image, driven directly.

Every job gets its own ``--internal`` Docker network (and, where this host lets us, IP
forwarding switched off on its bridge: a dockerd started with ``--iptables=false`` would
otherwise still route), so containers reach each other by their SageMaker names (algo-1 ...)
and nothing beyond this machine. A host is a long-lived container whose PID 1 only waits
(until its keep-until time, which a warm pool moves); the job runs in it with ``docker exec``
through the image's launcher (``sm_toolkit.runtime.launcher``), so a SIGTERM reaches the
script under both launch contracts: ``train`` (SDK v2, tuning trials) and the request's
ContainerEntrypoint (SDK v3). The host's folders are mounted at /opt/ml and at every other
container path the job names (the checkpoint path), so staging and artifacts happen on this
machine, as for the process backend. A warm pool keeps the containers running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError, LocalRunError
from sm_toolkit.local.backends import LineSink, pump
from sm_toolkit.local.hosts import Host, container_env, mapped_paths, write_opt_ml
from sm_toolkit.local.plan import JobPlan

OUR_ENTRYPOINT = "/opt/sm-toolkit/bin/entry.sh"
HOST_MOUNT = "/.sm-toolkit-host"  # the host folder, read-only: keep-until lives there
FOREVER = 4102444800  # 2100-01-01: keep the container while a job runs in it
KEEPER = (
    f'trap "exit 0" TERM; while [ "$(date +%s)" -lt "$(cat {HOST_MOUNT}/keep-until '
    '2>/dev/null || echo 0)" ]; do sleep 1; done'
)
LABEL = "sm-toolkit.job"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LocalRunError("docker CLI not found; install Docker (see .ci/docker.sh)") from None
    if check and done.returncode != 0:
        raise LocalRunError(f"docker {args[0]} failed: {done.stderr.strip()[-300:]}")
    return done


class DockerBackend:
    name = "docker"
    network_interface = "eth0"

    def __init__(self, image: str | None = None, network: str | None = None) -> None:
        self.image_override = image
        self.user_network = network  # joined besides the job's own (the user's services)
        self._adopted: dict | None = None
        self._containers: list[str] = []
        self._network: str | None = None
        self._ours = True

    def image(self, plan: JobPlan) -> str:
        return self.image_override or plan.image

    def check(self, plan: JobPlan) -> None:
        if plan.distribution in ("smddp", "pytorchddp"):
            raise ConfigError(
                "HyperParameters." + contract.HP_SMDDP,
                "true",
                f"{plan.distribution} runs SMDDP, which needs NVIDIA GPUs (P4d/P4de/P5); "
                "locally use torch_distributed",
            )
        image = self.image(plan)
        found = docker("image", "inspect", "-f", "{{json .Config.Entrypoint}}", image, check=False)
        if found.returncode != 0:
            raise ConfigError(
                "AlgorithmSpecification.TrainingImage" if not self.image_override else "--image",
                image,
                "an image on this machine (`make build` makes sm-toolkit:latest; or --image)",
            )
        self._ours = OUR_ENTRYPOINT in (found.stdout or "")
        if self.user_network is not None:
            there = docker("network", "inspect", self.user_network, check=False)
            if there.returncode != 0:
                raise ConfigError("--network", self.user_network, "an existing Docker network")

    # -- hosts -------------------------------------------------------------------------
    def layout(self, plan: JobPlan, job_dir: Path, attempt: int) -> list[Host]:
        names = contract.host_names(plan.instance_count)
        if attempt > 0:  # a restart after a reclaim gets fresh containers
            _remove(self._containers, self._network)
            self._adopted, self._containers, self._network = None, [], None
        if self._adopted is not None and attempt == 0:
            roots = [Path(r) for r in self._adopted["roots"]]
            for root in roots:  # a fresh /opt/ml for this job; the warm pool cache stays
                _clear_for_next_job(root)
        else:
            self._drop_adopted()
            roots = [job_dir / f"attempt-{attempt}" / n for n in names]
        for root in roots:
            root.mkdir(parents=True, exist_ok=True)
        return [Host(n, n, r, job_dir / f"{n}.log") for n, r in zip(names, roots, strict=True)]

    def prepare(self, plan: JobPlan, hosts: list[Host], hyperparameters: dict[str, str]) -> None:
        for host in hosts:
            write_opt_ml(host, plan, hosts, hyperparameters, self.network_interface)
            host.path(contract.WARMPOOL_CACHE_PATH).mkdir(parents=True, exist_ok=True)
            for path in mapped_paths(plan):
                host.path(path).mkdir(parents=True, exist_ok=True)
            (host.root / "keep-until").write_text(str(FOREVER))

    def start(self, plan: JobPlan, hosts: list[Host], on_line: LineSink) -> list[_DockerHost]:
        if not self._containers:
            self._network = _make_network(plan.name)
            self._containers = [self._run_container(plan, h) for h in hosts]
        env = _job_env(plan)
        started = []
        for host, container in zip(hosts, self._containers, strict=True):
            command = ["docker", "exec"]
            for key, value in sorted(env.items()):
                command += ["-e", f"{key}={value}"]
            command += [container, *self._command(plan)]
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            reader = pump(proc.stdout, host, on_line, host.log_path)
            started.append(_DockerHost(host, container, proc, reader, self._ours))
        return started

    def _command(self, plan: JobPlan) -> list[str]:
        job = ["train"] if plan.launch.is_train else list(plan.launch.entrypoint)
        if self._ours:  # the image's launcher forwards SIGTERM to the training processes
            return ["python3", "-m", "sm_toolkit.runtime.launcher", *job]
        return job

    def _run_container(self, plan: JobPlan, host: Host) -> str:
        name = f"smtk-{plan.name[:40]}-{host.name}-{uuid.uuid4().hex[:6]}"
        mounts = ["-v", f"{host.opt_ml}:{contract.OPT_ML}", "-v", f"{host.root}:{HOST_MOUNT}:ro"]
        for path in mapped_paths(plan):
            mounts += ["-v", f"{host.path(path)}:{path}"]
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            host.name,
            "--network",
            self._network,
            "--network-alias",
            host.name,
            "--label",
            f"{LABEL}={plan.name}",
            *mounts,
            "--entrypoint",
            "/bin/sh",
            self.image(plan),
            "-c",
            KEEPER,
        )
        if self.user_network is not None:
            docker("network", "connect", self.user_network, name)
        return name

    # -- warm pools --------------------------------------------------------------------
    def adopt_pool(self, pool) -> None:
        kept = pool.kept or {}
        alive = [c for c in kept.get("containers", []) if _running(c)]
        if alive and len(alive) == len(kept["containers"]):
            self._adopted, self._containers = kept, alive
            self._network = kept.get("network")

    def attach_cache(self, hosts: list[Host], pool) -> None:
        """The cache folder lives in the mounted host folders, which a pool keeps."""

    def keep_pool(self, pool, hosts: list[Host], keep_alive_seconds: int) -> dict:
        """Keep the containers running for the next matching job; returns what is kept."""
        if not self._containers:
            return {}
        for host in hosts:
            (host.root / "keep-until").write_text(str(int(_now()) + keep_alive_seconds))
        return {
            "containers": self._containers,
            "network": self._network,
            "roots": [str(h.root) for h in hosts],
        }

    def end_pool(self, pool) -> None:
        kept = pool.kept or {}
        _remove(kept.get("containers", []), kept.get("network"))

    def finish(self, keep: bool) -> None:
        """After the job: without a warm pool, its containers and network go."""
        if not keep:
            _remove(self._containers, self._network)
            self._containers, self._network = [], None

    def _drop_adopted(self) -> None:
        if self._adopted is not None:
            _remove(self._containers, self._network)
            self._adopted, self._containers, self._network = None, [], None


def _now() -> float:
    import time

    return time.time()


def _clear_for_next_job(root: Path) -> None:
    opt_ml = root / contract.OPT_ML.lstrip("/")
    keep = opt_ml / "sagemaker"
    for entry in opt_ml.iterdir() if opt_ml.is_dir() else []:
        if entry != keep:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _job_env(plan: JobPlan) -> dict[str, str]:
    """The job's variables minus what names this machine: its loopback endpoints, and an
    MLflow store that is a file here or on loopback (the engine logs that run from here)."""
    env = {k: v for k, v in container_env(plan, None).items() if not _loopback_url(k, v)}
    uri = env.get(contract.MLFLOW_TRACKING_URI_ENV)
    if uri is not None and not _reachable_from_container(uri):
        for key in contract.MLFLOW_ENV:
            env.pop(key, None)
    return env


def _reachable_from_container(uri: str) -> bool:
    """A path or sqlite:/// file is on this machine, a loopback URL means the container."""
    remote = uri.startswith(("http://", "https://", "databricks", "arn:"))
    return remote and not ("127." in uri or "localhost" in uri)


def _loopback_url(key: str, value: str) -> bool:
    """This machine's loopback endpoints mean nothing inside a container."""
    return key.startswith("AWS_ENDPOINT_URL") and ("127." in value or "localhost" in value)


def _running(container: str) -> bool:
    found = docker("inspect", "-f", "{{.State.Running}}", container, check=False)
    return found.returncode == 0 and found.stdout.strip() == "true"


def _make_network(job: str) -> str:
    name = f"smtk-{job[:40]}-{uuid.uuid4().hex[:6]}"
    docker("network", "create", "--internal", "--label", f"{LABEL}={job}", name)
    _stop_forwarding(name)
    return name


def _stop_forwarding(network: str) -> None:
    info = json.loads(docker("network", "inspect", "-f", "{{json .}}", network).stdout)
    bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name")
    switch = Path("/proc/sys/net/ipv4/conf") / (bridge or f"br-{info['Id'][:12]}") / "forwarding"
    try:
        switch.write_text("0")
    except OSError:  # Docker in a VM, or not root: the daemon's own iptables rules apply there
        pass


def _remove(containers: list[str], network: str | None) -> None:
    if containers:
        docker("rm", "-f", *containers, check=False)
    if network:
        docker("network", "rm", network, check=False)


class _DockerHost:
    def __init__(self, host: Host, container: str, proc, reader, ours: bool) -> None:
        self.host, self.container, self._proc, self._reader = host, container, proc, reader
        self._ours = ours

    def poll(self) -> int | None:
        return self._proc.poll()

    def terminate(self) -> None:
        pattern = "sm_toolkit.runtime.launcher" if self._ours else "."
        docker("exec", self.container, "pkill", "-TERM", "-f", pattern, check=False, timeout=30)

    def kill(self) -> None:
        # Everything the job started in the container; PID 1 (the keeper) stays for a pool.
        docker("exec", self.container, "sh", "-c", "kill -KILL -1", check=False, timeout=30)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.wait()
        self._reader.join(timeout=10)
