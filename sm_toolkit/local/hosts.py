"""The hosts of a local job: a folder per host that stands for its file system, the /opt/ml
payloads SageMaker writes, and the environment the job sees.

A container path P of host H lives at ``H.root / P`` on this machine. The docker backend mounts
those folders at P; the process backend hands the job the translated paths (its
``SAGEMAKER_BASE_DIR`` is ``H.root/opt/ml``). The job sees what SageMaker's container would
see: SM_* and the request's Environment, PATH and the locale, and the S3 endpoint settings,
not the laptop's credentials.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.local.plan import JobPlan

GROUP = "homogeneousCluster"
# What of this machine's environment reaches a job: the locale, and how to reach S3.
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE")


@dataclass(frozen=True)
class Host:
    name: str  # SageMaker's name: algo-1, algo-2, ...
    address: str  # what the job's resourceconfig.json calls it
    root: Path  # this host's file system: container path P is root / P
    log_path: Path

    def path(self, container_path: str) -> Path:
        """The file on this machine behind a container path (which must be absolute)."""
        pure = PurePosixPath(container_path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise ConfigError("path", container_path, "an absolute container path without '..'")
        return self.root.joinpath(*pure.parts[1:])

    @property
    def opt_ml(self) -> Path:
        return self.path(contract.OPT_ML)


def mapped_paths(plan: JobPlan) -> list[str]:
    """Container paths of the job outside /opt/ml that need a place on the host."""
    paths = [plan.checkpoint_path] if plan.checkpoint_s3 else []
    if plan.tensorboard_path:
        paths.append(plan.tensorboard_path)
    return [p for p in paths if not _under(p, contract.OPT_ML)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def translator(host: Host, plan: JobPlan):
    """A function that rewrites container paths in a string into this host's paths (for the
    process backend, whose job runs on this machine's file system)."""
    roots = sorted({contract.OPT_ML, *mapped_paths(plan)}, key=len, reverse=True)
    pattern = re.compile(
        "|".join(rf"(?<![\w/.]){re.escape(r.rstrip('/'))}(?=/|$|[^\w.-])" for r in roots)
    )

    def translate(text: str) -> str:
        return pattern.sub(lambda m: str(host.path(m.group(0))), text)

    return translate


def write_opt_ml(
    host: Host, plan: JobPlan, hosts: list[Host], hyperparameters: dict[str, str], iface: str
) -> None:
    """The folders and config files SageMaker puts in /opt/ml before the job starts."""
    base = host.opt_ml
    for sub in (
        contract.INPUT_DATA_DIR,
        contract.MODEL_DIR,
        contract.OUTPUT_DATA_DIR,
        contract.CODE_DIR,
        "input/config",
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if plan.checkpoint_s3:
        host.path(plan.checkpoint_path).mkdir(parents=True, exist_ok=True)
    addresses = [h.address for h in hosts]
    resource = {
        "current_host": host.address,
        "current_instance_type": plan.instance_type,
        "current_group_name": GROUP,
        "hosts": addresses,
        "instance_groups": [
            {"instance_group_name": GROUP, "instance_type": plan.instance_type, "hosts": addresses}
        ],
        "network_interface_name": iface,
    }
    channels = {
        c.name: {
            "TrainingInputMode": "File",
            "S3DistributionType": c.distribution,
            "RecordWrapperType": "None",
            **({"ContentType": c.content_type} if c.content_type else {}),
        }
        for c in plan.channels
    }
    _write_json(base / contract.HYPERPARAMETERS_FILE, hyperparameters)
    _write_json(base / contract.RESOURCE_CONFIG_FILE, resource)
    _write_json(base / contract.INPUT_DATA_CONFIG_FILE, channels)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def job_hyperparameters(plan: JobPlan) -> dict[str, str]:
    """The request's hyperparameters as the container sees them: the code, which the engine
    stages into /opt/ml/code, is found there."""
    hps = dict(plan.hyperparameters)
    if contract.HP_SUBMIT_DIRECTORY in hps:
        hps[contract.HP_SUBMIT_DIRECTORY] = json.dumps(f"{contract.OPT_ML}/{contract.CODE_DIR}")
    return hps


def container_env(plan: JobPlan, master_port: int | None) -> dict[str, str]:
    """What the job's containers get: the request's Environment plus what SageMaker sets."""
    env = dict(plan.environment)
    env.update(
        {
            contract.JOB_NAME_ENV: plan.name,
            "AWS_REGION": plan.region,
            "AWS_DEFAULT_REGION": plan.region,
        }
    )
    for key in PASSED_ENV:
        if os.environ.get(key):
            env.setdefault(key, os.environ[key])
    if plan.rules:
        env[contract.RULES_ENV] = ",".join(plan.rules)
    if plan.keep_alive_seconds > 0:
        env[contract.WARMPOOL_CACHE_ENV] = contract.WARMPOOL_CACHE_PATH
    if master_port is not None:
        env[contract.MASTER_PORT_ENV] = str(master_port)
    return env
