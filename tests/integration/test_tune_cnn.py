"""`sm-toolkit tune SPEC --local` with each strategy on the real CNN at its debug size,
then a Bayesian job warm-started from a local parent (the Random job)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = {
    "name": "cnn-tune",
    "entry_point": "train_cnn.py",
    "hyperparameters": {"size": "debug", "epochs": 2, "threads": 1},
    "image_uri": "sm-toolkit:latest",
    "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
    "instance": {"type": "ml.c5.xlarge"},
}
LR = {"type": "continuous", "min": 0.001, "max": 0.03, "scaling": "Logarithmic"}
STRATEGIES = {
    "Random": {"ranges": {"lr": LR}, "max_jobs": 2},
    "Grid": {"ranges": {"optimizer": {"type": "categorical", "values": ["adamw", "sgd"]}}},
    "Bayesian": {"ranges": {"lr": LR}, "max_jobs": 2, "random_seed": 1},
    "Hyperband": {
        "ranges": {"lr": LR},
        "max_jobs": 2,
        "hyperband": {"min_resource": 1, "max_resource": 2},
    },
}


def tune(tmp_path: Path, bucket: str, name: str, tuning: dict) -> tuple[dict, str]:
    spec = dict(
        BASE,
        output_path=f"s3://{bucket}/output",
        tuning={
            "job_name": name,
            "objective": {"metric": "val:accuracy", "type": "Maximize"},
            "max_parallel_jobs": 2,
            **tuning,
        },
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sm_toolkit.cli",
            "tune",
            str(path),
            "--local",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / "tuning" / name / "results.json").read_text()), proc.stdout


def test_each_strategy_then_a_warm_start_from_the_local_parent(tmp_path, bucket):
    results = {}
    for strategy, tuning in STRATEGIES.items():
        name = f"cnn-{strategy.lower()}"
        results[strategy], _ = tune(tmp_path, bucket, name, {"strategy": strategy, **tuning})
        trials = results[strategy]["trials"]
        assert len(trials) == 2, strategy
        assert all(t["name"].startswith(f"{name}-00") for t in trials)
        completed = [t for t in trials if t["status"] == "Completed"]
        assert completed and all(0.0 <= t["objective"] <= 1.0 for t in completed), strategy
    grid = {t["hyperparameters"]["optimizer"] for t in results["Grid"]["trials"]}
    assert grid == {"adamw", "sgd"}

    warm, log = tune(
        tmp_path,
        bucket,
        "cnn-warm",
        {
            "strategy": "Bayesian",
            "ranges": {"lr": LR},
            "max_jobs": 2,
            "random_seed": 2,
            "warm_start": {"type": "IdenticalDataAndAlgorithm", "parents": ["cnn-random"]},
        },
    )
    parent = {t["name"] for t in results["Random"]["trials"]}
    assert len(warm["trials"]) == 2 and not parent & {t["name"] for t in warm["trials"]}
    assert re.search(r"from local parent cnn-random: [12] of 2 trials added", log), log[-2000:]
    assert (tmp_path / "tuning" / "cnn-warm" / "leaderboard.csv").exists()
