"""Local tuning strategies compared on the CNN digits task (entrypoints/train_cnn.py).

Questions:
1. Hyperband vs Random: does Hyperband reach the best objective Random reaches while spending
   at most half of Random's training epochs?
2. Bayesian (optuna's GPSampler) vs Random at an equal number of trials: which finds the
   better objective?

Every trial is a real local training job (``sm_toolkit.local.process.run_job``: SDK render,
relocated /opt/ml, sagemaker-training launcher, artifacts to a moto S3 on 127.0.0.1), at the
``debug`` size (400 digits), objective val:loss (Minimize). Per seed: Random and Bayesian run
``--trials`` trials of ``--epochs`` epochs; Hyperband (min_resource 1, max_resource
``--epochs``) runs ``--hyperband-trials`` trials. Trial overhead (process start, torch import,
SDK render) dominates wall time at this size, so epochs, not seconds, are the budget measure.

A second, cheap study repeats question 2 on the quadratic test fixture with many seeds
(in-process fake runner, no processes), where the optimum is known.

    .venv/bin/python benchmarks/tuning_strategies.py            # ~15 min on 2 busy cores
    .venv/bin/python benchmarks/tuning_strategies.py --seeds 1 --trials 3 --hyperband-trials 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sm_toolkit.aws.local_request import localize_request
from sm_toolkit.aws.render import render
from sm_toolkit.local.tuning import TuningResult, run_local_tuning
from sm_toolkit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".sm-toolkit" / "bench" / "tuning_strategies"

CNN_RANGES = {
    "lr": {"type": "continuous", "min": 1e-4, "max": 0.3},  # Auto -> Logarithmic
    "dropout": {"type": "continuous", "min": 0.0, "max": 0.5},
    "optimizer": {"type": "categorical", "values": ["sgd", "adam", "rmsprop"]},
}


def cnn_spec(strategy: str, *, seed: int, trials: int, epochs: int) -> Any:
    tuning: dict[str, Any] = {
        "job_name": f"{strategy.lower()}-s{seed}",
        "strategy": strategy,
        "objective": {"metric": "val:loss", "type": "Minimize"},
        "ranges": CNN_RANGES,
        "max_jobs": trials,
        "max_parallel_jobs": 2,
        "random_seed": seed,
    }
    if strategy == "Hyperband":
        tuning["hyperband"] = {"min_resource": 1, "max_resource": epochs}
    raw = {
        "name": "cnn-tune-bench",
        "entry_point": "train_cnn.py",
        # threads 1: two trials share two cores; warmup 0: a debug epoch is only 5 steps.
        "hyperparameters": {"size": "debug", "epochs": epochs, "threads": 1, "warmup_steps": 0},
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-toolkit:0.1.0",
        "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
        "instance": {"type": "ml.c5.xlarge"},
        "output_path": "s3://sm-toolkit-bench/output",
        "tuning": tuning,
    }
    return parse_spec(raw, base_dir=ROOT)


def start_moto() -> Any:
    """The embedded moto on 127.0.0.1 (sm_toolkit.local.embedded_aws), with the bucket."""
    import boto3

    from sm_toolkit.local.embedded_aws import start_moto as start

    server, _ = start()
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="sm-toolkit-bench")
    return server


def epochs_to_reach(result: TuningResult, target: float) -> int | None:
    """Epochs spent (trials in launch order) until a Completed trial reached ``target``."""
    spent = 0
    for trial in sorted(result.trials, key=lambda t: t.index):
        spent += trial.epochs
        if trial.status == "Completed" and trial.objective is not None:
            if trial.objective <= target:
                return spent
    return None


def summarise(result: TuningResult, seconds: float) -> dict[str, Any]:
    return {
        "best": result.best.objective if result.best else None,
        "best_params": result.best.hyperparameters if result.best else None,
        "epochs": result.total_epochs,
        "trials": len(result.trials),
        "stopped": sum(t.early_stopped for t in result.trials),
        "seconds": round(seconds, 1),
    }


def run_cnn(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for seed in range(args.seeds):
        row: dict[str, Any] = {"seed": seed}
        results = {}
        plan = (
            ("Random", args.trials),
            ("Bayesian", args.trials),
            ("Hyperband", args.hyperband_trials),
        )
        for strategy, trials in plan:
            spec = cnn_spec(strategy, seed=seed, trials=trials, epochs=args.epochs)
            start = time.monotonic()
            request = localize_request(render(spec).request, spec)
            result = run_local_tuning(request, workdir=OUT / "cnn", log=_quiet_log)
            results[strategy] = result
            row[strategy] = summarise(result, time.monotonic() - start)
            print(f"[bench] seed {seed} {strategy}: {row[strategy]}", flush=True)
        target = row["Random"]["best"]
        if target is not None:
            # Same seed, same configurations in the same order: the Hyperband runs differ
            # from Random only by stopping trials early and by the trials after Random's.
            row["random_epochs_to_best"] = epochs_to_reach(results["Random"], target)
            row["hyperband_epochs_to_random_best"] = epochs_to_reach(results["Hyperband"], target)
        rows.append(row)
    return rows


def _quiet_log(line: str) -> None:
    # Keep the start/finish lines (progress) and drop the per-run leaderboard tables.
    if line.startswith("[tune]"):
        print(line, flush=True)


def run_quadratic(seeds: int, trials: int) -> dict[str, list[float]]:
    """Bayesian vs Random on the quadratic fixture (known optimum 2/epochs at x=1, y=2, adam)."""
    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "quadratic"))
    from quadratic_support import FakeRunner, make_request

    best: dict[str, list[float]] = {"Random": [], "Bayesian": []}
    for seed in range(seeds):
        for strategy in best:
            request = make_request(
                job_name=f"q-{strategy.lower()}-{seed}",
                strategy=strategy,
                max_jobs=trials,
                max_parallel_jobs=2,
                random_seed=seed,
                epochs=2,
            )
            result = run_local_tuning(
                request, workdir=OUT / "quadratic", run_job=FakeRunner(), log=lambda line: None
            )
            best[strategy].append(result.best.objective - 1.0)  # regret: optimum is 2/2 = 1
    return best


def report(rows: list[dict[str, Any]], quad: dict[str, list[float]], args) -> str:
    lines = [
        f"CNN digits (debug), val:loss (lower is better), {args.trials} trials x "
        f"{args.epochs} epochs for Random/Bayesian, {args.hyperband_trials} Hyperband trials",
        "| seed | Random best | epochs (to its best) | Bayesian best | Hyperband best | epochs "
        "| HB epochs to Random's best | HB/Random total epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rnd, bay, hb = r["Random"], r["Bayesian"], r["Hyperband"]
        reach = r.get("hyperband_epochs_to_random_best")
        lines.append(
            f"| {r['seed']} | {_f(rnd['best'])} | {rnd['epochs']} "
            f"({r.get('random_epochs_to_best')}) | {_f(bay['best'])} | {_f(hb['best'])} | "
            f"{hb['epochs']} ({hb['stopped']} of {hb['trials']} stopped) | "
            f"{reach if reach is not None else 'not reached'} | "
            f"{hb['epochs'] / rnd['epochs']:.0%} |"
        )
    for name in ("Random", "Bayesian", "Hyperband"):
        vals = [r[name]["best"] for r in rows if r[name]["best"] is not None]
        if len(vals) > 1:
            lines.append(
                f"{name}: best val:loss mean {statistics.mean(vals):.4f}, "
                f"sd {statistics.stdev(vals):.4f}, min {min(vals):.4f}, max {max(vals):.4f}"
            )
    if quad["Random"]:
        wins = sum(b < r for b, r in zip(quad["Bayesian"], quad["Random"], strict=True))
        lines.append(
            f"Quadratic fixture, {len(quad['Random'])} seeds x {args.quad_trials} trials: median "
            f"regret Random {statistics.median(quad['Random']):.4f}, Bayesian "
            f"{statistics.median(quad['Bayesian']):.4f}; Bayesian better in {wins} of "
            f"{len(quad['Random'])} seeds"
        )
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=6, help="Random and Bayesian trials")
    p.add_argument("--hyperband-trials", type=int, default=9)
    p.add_argument("--epochs", type=int, default=9, help="epochs per trial (Hyperband: max)")
    p.add_argument("--quad-seeds", type=int, default=20)
    p.add_argument("--quad-trials", type=int, default=15)
    args = p.parse_args()
    start = time.monotonic()
    quad = run_quadratic(args.quad_seeds, args.quad_trials)
    server = start_moto()
    try:
        rows = run_cnn(args)
    finally:
        server.stop()
    text = report(rows, quad, args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps({"cnn": rows, "quadratic": quad}, indent=2))
    print(text)
    print(f"[bench] total {time.monotonic() - start:.0f}s; details in {OUT / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
