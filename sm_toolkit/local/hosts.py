"""The hosts of a local job: one relocated /opt/ml per host, and each host's environment.

One host is named ``algo-1`` (as in SageMaker) and the DNS wait is skipped. Several hosts
are named 127.0.0.1, 127.0.0.2, ...: every 127/8 address is this machine's loopback, so
each name resolves, torchrun's rendezvous on the first host works, and nothing leaves the
machine.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sm_toolkit.local import opt_ml
from sm_toolkit.spec import JobSpec

TRAINING_MODULE = "sagemaker_pytorch_container.training:main"


@dataclass(frozen=True)
class Host:
    name: str
    base: Path  # this host's /opt/ml
    checkpoint_dir: Path
    log_path: Path
    env: dict[str, str]


def host_names(count: int) -> list[str]:
    return ["algo-1"] if count == 1 else [f"127.0.0.{i + 1}" for i in range(count)]


def layout(spec: JobSpec, request: dict, job_name: str, job_dir: Path) -> list[Host]:
    """Write each host's /opt/ml tree and return the hosts (host 0 is the leader)."""
    names = host_names(spec.instance.count)
    hps = opt_ml.hyperparameters_payload(request["HyperParameters"], str(spec.source_dir))
    hosts = []
    for name in names:
        base = job_dir / ("opt_ml" if len(names) == 1 else f"opt_ml-{name}")
        opt_ml.write_tree(
            base,
            hyperparameters=hps,
            resourceconfig=opt_ml.resource_config(names, name, spec.instance.type),
            inputdataconfig=opt_ml.input_data_config(list(spec.inputs)),
        )
        local_path = spec.checkpoint.local_path if spec.checkpoint else "/opt/ml/checkpoints"
        checkpoint_dir = opt_ml.container_path(local_path, base)
        if spec.checkpoint is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
        log = job_dir / ("train.log" if len(names) == 1 else f"train-{name}.log")
        hosts.append(
            Host(
                name,
                base,
                checkpoint_dir,
                log,
                host_env(spec, request, job_name, base, single=len(names) == 1),
            )
        )
    return hosts


def host_env(
    spec: JobSpec, request: dict, job_name: str, base: Path, *, single: bool
) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in request.get("Environment", {}).items():
        env[key] = str(opt_ml.container_path(value, base)) if value.startswith("/opt/ml") else value
    env.update(
        {
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
            "TRAINING_JOB_NAME": job_name,
            "AWS_REGION": spec.region,
            "PYTHONUNBUFFERED": "1",
            "GLOO_SOCKET_IFNAME": "lo",
            # torchrun and mpirun are found on PATH, next to this interpreter in a venv
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    if single:
        # algo-1 is in no DNS here: skip the launcher's 15-minute wait for it to resolve.
        env["SM_STUDIO_LOCAL_MODE"] = "true"
    if spec.rules:
        env["SM_TOOLKIT_RULES"] = ",".join(spec.rules)
    return env
