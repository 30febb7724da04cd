"""Read /opt/ml and the SM_* variables once, into one frozen `RuntimeEnv`.

Inside SageMaker (or a fake base dir) the paths come from SM_* (set by sagemaker-training)
or from the base dir (SAGEMAKER_BASE_DIR, else /opt/ml). Run directly with no SM_* env and no
/opt/ml, everything goes under a local folder such as ./runs/train_cnn so users can iterate.
Nothing here creates folders: `RuntimeEnv.prepare()` does, when the job starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE = Path("/opt/ml")


@dataclass(frozen=True, kw_only=True)
class RuntimeEnv:
    """Where the job reads data and writes results. Built by `read_env`."""

    in_sagemaker: bool
    base_dir: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    channels: Mapping[str, Path] = field(default_factory=dict)
    checkpoint_dir: Path | None = None
    tensorboard_dir: Path | None = None
    hosts: tuple[str, ...] = ("localhost",)
    current_host: str = "localhost"
    num_cpus: int = 1
    num_gpus: int = 0
    rules: tuple[str, ...] = ()
    job_name: str | None = None

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def channel(self, name: str) -> Path | None:
        """The folder of input channel `name`, or None when the job has no such channel."""
        return self.channels.get(name)

    def prepare(self) -> None:
        """Create the output folders (the only place that writes to disk)."""
        for path in (self.model_dir, self.output_dir, self.output_data_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)


def _int(environ: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(environ.get(key, default))
    except ValueError:
        return default


def _channels(environ: Mapping[str, str], base: Path) -> dict[str, Path]:
    channels = {
        key[len("SM_CHANNEL_") :].lower(): Path(value)
        for key, value in environ.items()
        if key.startswith("SM_CHANNEL_") and value
    }
    data_dir = base / "input" / "data"
    if not channels and data_dir.is_dir():  # base dir without the SM_* the launcher sets
        channels = {p.name: p for p in sorted(data_dir.iterdir()) if p.is_dir()}
    return channels


def _checkpoint_dir(environ: Mapping[str, str], base: Path) -> Path | None:
    if environ.get("SM_CHECKPOINT_DIR"):
        return Path(environ["SM_CHECKPOINT_DIR"])
    # SageMaker creates /opt/ml/checkpoints only when the job has a CheckpointConfig,
    # so the folder's existence is the switch.
    candidate = base / "checkpoints"
    return candidate if candidate.is_dir() else None


def _rules(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = environ.get("SM_TOOLKIT_RULES", "")
    return tuple(r.strip() for r in raw.split(",") if r.strip())


def read_env(environ: Mapping[str, str], *, local_dir: Path) -> RuntimeEnv:
    """Parse the process environment into a RuntimeEnv.

    `local_dir` is the base used when the job runs outside any SageMaker layout.
    """
    base_env = environ.get("SAGEMAKER_BASE_DIR")
    has_sm = any(k.startswith("SM_") and k.endswith("_DIR") for k in environ) or bool(base_env)
    in_sagemaker = has_sm or DEFAULT_BASE.is_dir()
    base = Path(base_env) if base_env else (DEFAULT_BASE if in_sagemaker else Path(local_dir))

    def path(key: str, default: Path) -> Path:
        return Path(environ[key]) if environ.get(key) else default

    output_dir = path("SM_OUTPUT_DIR", base / "output")
    hosts = tuple(json.loads(environ["SM_HOSTS"])) if environ.get("SM_HOSTS") else ("localhost",)
    return RuntimeEnv(
        in_sagemaker=in_sagemaker,
        base_dir=base,
        model_dir=path("SM_MODEL_DIR", base / "model"),
        output_dir=output_dir,
        output_data_dir=path("SM_OUTPUT_DATA_DIR", output_dir / "data"),
        channels=_channels(environ, base),
        checkpoint_dir=_checkpoint_dir(environ, base),
        tensorboard_dir=Path(environ["SM_TENSORBOARD_DIR"])
        if environ.get("SM_TENSORBOARD_DIR")
        else None,
        hosts=hosts,
        current_host=environ.get("SM_CURRENT_HOST", hosts[0]),
        num_cpus=_int(environ, "SM_NUM_CPUS", os.cpu_count() or 1),
        num_gpus=_int(environ, "SM_NUM_GPUS", 0),
        rules=_rules(environ),
        job_name=environ.get("TRAINING_JOB_NAME") or None,
    )
