"""The local results store: ``<workdir>/tuning/<tuning job name>/results.json``.

One JSON file per tuning job holds its configuration (objective, ranges, static
hyperparameters) and every trial; a later tuning job warm-starts from it the way a SageMaker
tuning job warm-starts from a parent's training jobs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sm_toolkit.local.tuning.trials import TrialRecord

RESULTS_FILE = "results.json"
FORMAT_VERSION = 1


def tuning_dir(workdir: Path, job_name: str) -> Path:
    """Where a local tuning job keeps its trials, results, leaderboard and plots."""
    return Path(workdir) / "tuning" / job_name


def results_path(workdir: Path, job_name: str) -> Path:
    return tuning_dir(workdir, job_name) / RESULTS_FILE


def range_to_dict(rng: Any) -> dict[str, Any]:
    """A tuned range as plain JSON data."""
    return {k: v for k, v in dataclasses.asdict(rng).items() if v not in (None, ())}


def tuning_document(
    *,
    tuning: Any,
    static_hyperparameters: Mapping[str, Any],
    records: Sequence[TrialRecord],
    best: TrialRecord | None,
    status: str,
    stop_reason: str,
) -> dict[str, Any]:
    """The results document (pure: build here, write with :func:`write_results`)."""
    return {
        "format": FORMAT_VERSION,
        "tuning_job_name": tuning.job_name,
        "strategy": tuning.strategy,
        "objective": {"metric": tuning.objective.metric, "type": tuning.objective.type},
        "ranges": {name: range_to_dict(r) for name, r in tuning.ranges.items()},
        "static_hyperparameters": dict(static_hyperparameters),
        "status": status,
        "stop_reason": stop_reason,
        "best_trial": best.name if best else None,
        "trials": [r.to_dict() for r in records],
    }


def write_results(path: Path, document: Mapping[str, Any]) -> Path:
    """Write atomically, so a crashed run never leaves half a file for a warm start to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: Path) -> dict[str, Any]:
    """Read a results document; raises FileNotFoundError when there is none."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown results format {data.get('format')!r}")
    return data
