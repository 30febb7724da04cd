"""Per-trial overhead of a local tuning job: trial wall time minus the script's own time.

Two figures, side by side in one run, with one trial at a time (so trials do not overlap):

- **tuner**: the tuner's own share. The engine is a stand-in that sleeps for the script's
  time and prints its metric lines; what is left per trial is asking optuna for a point,
  building the trial's CreateTrainingJob request, the SQLite study, reporting, telling.
- **engine** (when ``sm_toolkit.local.engine`` is importable): every trial a real local
  training job of ``tests/fixtures/quadratic/train.py``. Its own time is measured by running
  the same script with the same arguments directly (``python train.py``), median of 3.

Per-trial wall time is the interval between consecutive trial starts as the tuner's log
shows them (launch to launch), so it includes everything between two trials.

    .venv/bin/python benchmarks/tuning_overhead.py [--trials 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "quadratic"
sys.path.insert(0, str(FIXTURE))

EPOCHS, SLEEP = 3, 0.1  # the script's own work: 3 epochs of 0.1 s


def _timed_log(starts: list[float]):
    def log(line: str) -> None:
        if line.startswith("[tune] ") and " started " in line:
            starts.append(time.monotonic())

    return log


def _launch_intervals(request, workdir: Path, run_job=None) -> list[float]:
    from sm_toolkit.local.tuning import run_local_tuning

    starts: list[float] = []
    kwargs = {} if run_job is None else {"run_job": run_job}
    run_local_tuning(request, workdir=workdir, log=_timed_log(starts), **kwargs)
    return [b - a for a, b in zip(starts, starts[1:], strict=False)]


def _sleeping_engine(request, *, workdir, on_line=None, stop_event=None) -> dict:
    """Stands in for the engine: the script's time as sleep, its metric lines, a document."""
    for epoch in range(1, EPOCHS + 1):
        time.sleep(SLEEP)
        if on_line is not None:
            on_line(f"[metrics] epoch={epoch} val:loss={1.0 / epoch:.6f}")
    metric = {"MetricName": "val:loss", "Value": 1.0 / EPOCHS, "Timestamp": time.time()}
    return {
        "TrainingJobName": request["TrainingJobName"],
        "TrainingJobStatus": "Completed",
        "FinalMetricDataList": [metric],
    }


def _script_seconds() -> float:
    runs = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                str(FIXTURE / "train.py"),
                "--epochs",
                str(EPOCHS),
                "--sleep",
                str(SLEEP),
                "-x",
                "0.5",
                "-y",
                "2",
                "--optimizer",
                "adam",
            ],
            check=True,
            capture_output=True,
        )
        runs.append(time.monotonic() - start)
    return statistics.median(runs)


def _engine_available() -> bool:
    try:
        import sm_toolkit.local.engine  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()

    from quadratic_support import make_spec

    from sm_toolkit.aws.local_request import localize_request
    from sm_toolkit.aws.render import render

    spec = make_spec(max_jobs=args.trials, max_parallel_jobs=1, epochs=EPOCHS, sleep=SLEEP)
    request = localize_request(render(spec).request, spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tuner = _launch_intervals(request, Path(tmp) / "tuner", _sleeping_engine)
        rows.append(("tuner (engine stand-in)", statistics.median(tuner), EPOCHS * SLEEP))
        if _engine_available():
            from sm_toolkit.local.embedded_aws import start_moto

            server, _ = start_moto()  # trials upload their artifacts: an S3 on 127.0.0.1
            try:
                import boto3

                boto3.client("s3").create_bucket(Bucket=spec.bucket)
                engine = _launch_intervals(request, Path(tmp) / "engine")
            finally:
                server.stop()
            rows.append(("engine (process backend)", statistics.median(engine), _script_seconds()))
    print(f"| {args.trials} sequential trials | trial wall (median) | script's own | overhead |")
    print("|---|---|---|---|")
    for name, wall, own in rows:
        print(f"| {name} | {wall:.3f} s | {own:.3f} s | {wall - own:.3f} s |")
    if not _engine_available():
        print("(sm_toolkit.local.engine is not importable here: engine figure skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
