"""The endpoint's overhead: one training job through ``sm-toolkit serve`` vs the engine.

Both paths run the same CreateTrainingJob request (the user script of tests/fixtures, a
few epochs) with the process backend, against the same embedded S3 (the endpoint's), taking
turns so that the machine's load hits both alike:

- engine: ``sm_toolkit.local.engine.run_training_job(request)`` in this process;
- endpoint: boto3 ``create_training_job`` to the endpoint, then DescribeTrainingJob every
  0.1 s until the job has ended (what a client sees).

Prints each run's wall times and their ratio, the medians, and the median of the paired
ratios (target: endpoint/engine <= 1.10).
Run: ``python benchmarks/endpoint_overhead.py [--repeats 5] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
USERSCRIPT = ROOT / "tests" / "fixtures" / "userscript"
TARGET = 1.10


def request(name: str, epochs: int) -> dict:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "AlgorithmSpecification": {
            "TrainingImage": "sm-toolkit:latest",
            "TrainingInputMode": "File",
        },
        "HyperParameters": {
            "mode": '"ok"',
            "epochs": str(epochs),
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"file://{USERSCRIPT}"',
        },
        "OutputDataConfig": {"S3OutputPath": "s3://bench-bucket/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def start_endpoint(workdir: Path) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sm_toolkit.cli", "serve", "--port", "0", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("sm-toolkit serve did not start")


def through_engine(req: dict, workdir: Path) -> float:
    from sm_toolkit.local.engine import run_training_job

    start = time.perf_counter()
    doc = run_training_job(req, workdir=workdir)
    elapsed = time.perf_counter() - start
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    return elapsed


def through_endpoint(req: dict, sm) -> float:
    start = time.perf_counter()
    sm.create_training_job(**req)
    while True:
        status = sm.describe_training_job(TrainingJobName=req["TrainingJobName"])
        if status["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    assert status["TrainingJobStatus"] == "Completed", status.get("FailureReason")
    return elapsed


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--repeats", type=int, default=5)
    args.add_argument("--epochs", type=int, default=3)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_endpoint(Path(tmp) / "endpoint")
        try:
            # Both paths share the endpoint's S3, so staging and uploads cost the same.
            os.environ.update(
                AWS_ENDPOINT_URL=url,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            boto3.client("s3").create_bucket(Bucket="bench-bucket")
            sm = boto3.client("sagemaker")
            # Both paths warm up first (imports, the server's first engine job).
            through_engine(request("warm-up", opts.epochs), Path(tmp) / "engine")
            through_endpoint(request("warm-up", opts.epochs), sm)
            engine, endpoint = [], []
            for i in range(opts.repeats):
                # Alternate which path goes first, so a drift in load hits both alike.
                pair = [("engine", i), ("endpoint", i)][:: 1 if i % 2 == 0 else -1]
                for path, n in pair:
                    if path == "engine":
                        job = request(f"engine-{n}", opts.epochs)
                        engine.append(through_engine(job, Path(tmp) / "engine"))
                    else:
                        endpoint.append(through_endpoint(request(f"endpoint-{n}", opts.epochs), sm))
                print(
                    f"run {i}: engine {engine[-1]:.2f} s, endpoint {endpoint[-1]:.2f} s, "
                    f"ratio {endpoint[-1] / engine[-1]:.3f}",
                    flush=True,
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    ratio = statistics.median(e / d for e, d in zip(endpoint, engine, strict=True))
    print(
        f"median: engine {statistics.median(engine):.2f} s, endpoint "
        f"{statistics.median(endpoint):.2f} s; median of the paired ratios {ratio:.3f} "
        f"(target <= {TARGET})"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
