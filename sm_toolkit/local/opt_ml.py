"""The /opt/ml tree a SageMaker training container sees, built as plain data.

Pure builders return the three config payloads; ``write_tree`` is the only I/O. The
base directory is relocated with ``SAGEMAKER_BASE_DIR`` so no root access is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GROUP = "homogeneousCluster"


def hyperparameters_payload(request_hps: dict[str, str], code_dir: str) -> dict[str, str]:
    """The request's HyperParameters (JSON-encoded strings, as the SDK sends them), with
    the S3 code location replaced by the local source folder."""
    hps = dict(request_hps)
    hps["sagemaker_submit_directory"] = json.dumps(code_dir)
    return hps


def resource_config(hosts: list[str], current_host: str, instance_type: str) -> dict[str, Any]:
    return {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_group_name": GROUP,
        "hosts": hosts,
        "instance_groups": [
            {"instance_group_name": GROUP, "instance_type": instance_type, "hosts": hosts}
        ],
        "network_interface_name": "lo",
    }


def input_data_config(channels: list[str]) -> dict[str, Any]:
    return {
        c: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for c in channels
    }


def write_tree(
    base: Path,
    *,
    hyperparameters: dict[str, str],
    resourceconfig: dict[str, Any],
    inputdataconfig: dict[str, Any],
) -> None:
    """Create the folders and config files under ``base`` (the relocated /opt/ml)."""
    config = base / "input" / "config"
    for d in (
        config,
        base / "input" / "data",
        base / "model",
        base / "output" / "data",
        base / "code",
    ):
        d.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
    (config / "resourceconfig.json").write_text(json.dumps(resourceconfig, indent=1))
    (config / "inputdataconfig.json").write_text(json.dumps(inputdataconfig, indent=1))


def container_path(path: str, base: Path) -> Path:
    """Map a container path (/opt/ml/...) to the relocated base; others stay as they are."""
    if path == "/opt/ml" or path.startswith("/opt/ml/"):
        return base / path[len("/opt/ml/") :] if path != "/opt/ml" else base
    return Path(path)
