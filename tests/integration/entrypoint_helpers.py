"""Fake /opt/ml base dirs and subprocess runners for the entrypoint integration tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINTS = ROOT / "entrypoints"
VENV_BIN = Path(sys.executable).parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's env without any SageMaker / launcher variables, plus `extra`."""
    drop = ("SM_", "SAGEMAKER_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "OMPI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def make_base(base: Path, program: str, hyperparameters: dict, channel_writer=None) -> Path:
    """A fake /opt/ml the way the SDK / SageMaker lays it out (values JSON-encoded strings)."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = {k: json.dumps(v) for k, v in hyperparameters.items()}
    hps["sagemaker_program"] = json.dumps(program)
    hps["sagemaker_submit_directory"] = json.dumps(str(ENTRYPOINTS))
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": "local",
        "network_interface_name": "eth0",
    }))  # fmt: skip
    channels = {}
    if channel_writer is not None:
        channel_writer(base / "input" / "data" / "train")
        channels = {"train": {"TrainingInputMode": "File"}}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    return base


def run_train_launcher(base: Path, timeout: int = 300, **extra_env: str):
    """sagemaker-training's `train` with the PyTorch toolkit module, against `base`."""
    env = clean_env(
        SAGEMAKER_BASE_DIR=str(base),
        SM_STUDIO_LOCAL_MODE="true",  # skip the 15-minute DNS wait for algo-1
        SAGEMAKER_TRAINING_MODULE="sagemaker_pytorch_container.training:main",
        **extra_env,
    )
    return subprocess.run(
        [str(VENV_BIN / "train")], cwd=base, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def run_entrypoint(name: str, args: list[str], cwd: Path, timeout: int = 300, **extra_env: str):
    return subprocess.run(
        [sys.executable, str(ENTRYPOINTS / name), *args], cwd=cwd, env=clean_env(**extra_env),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
