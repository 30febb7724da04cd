"""Start times of local training, side by side in one run: invocation to the first line of the
same tiny script (benchmarks/tiny/train.py), for

* SDK v2 local mode ``fit()`` (docker compose, the image)             ``sdk_v2_local``
* SDK v3 ``ModelTrainer`` local container (with ``--v3-python``)      ``sdk_v3_local``
* ``sm-toolkit run --local --request`` on the process backend, cold   ``process_cold``
* the same, a second job taking the first one's warm pool             ``process_warm``
* ``--backend docker``, cold (a new container), and warm (kept one)   ``docker_cold/warm``

Each figure is a whole process started the way a user starts it; the clock stops when the
script's first line reaches that process's stdout. Medians of ``--rounds`` rounds, the
variants interleaved per round; ratios are to SDK v2 local mode. S3 is a moto server on
127.0.0.1. Needs Docker and `make build`. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/local_start_times.py [--rounds 3] [--v3-python .venv-v3/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "tiny-script: first line"
BUCKET = "bench-start-times"
IMAGE = os.environ.get("SM_TOOLKIT_IMAGE", "sm-toolkit:latest")


def first_line_seconds(command: list[str], **kwargs) -> float:
    """Seconds from starting ``command`` to the tiny script's first line on its stdout."""
    began = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
    seen = None
    for line in proc.stdout:
        if seen is None and MARK in line:
            seen = time.monotonic() - began
    proc.wait()
    if seen is None or proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}... failed (rc {proc.returncode})")
    return seen


def request(name: str, keep_alive: int) -> dict:
    code = f"file://{ROOT / 'benchmarks' / 'tiny'}"
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(code),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 1,
            "VolumeSizeInGB": 5,
            "KeepAlivePeriodInSeconds": keep_alive,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def sm_toolkit_run(work: Path, backend: str, keep_alive: int) -> float:
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"req-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(request(f"start-{uuid.uuid4().hex[:10]}", keep_alive)))
    cli = [
        sys.executable,
        "-m",
        "sm_toolkit.cli",
        "run",
        "--local",
        "--request",
        str(path),
        "--workdir",
        str(work / backend),
        "--backend",
        backend,
    ]
    return first_line_seconds(cli + (["--image", IMAGE] if backend == "docker" else []))


def round_of(work: Path, v3_python: str | None) -> dict[str, float]:
    out = {
        "sdk_v2_local": first_line_seconds(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "_sdk_v2_local_fit.py"),
                IMAGE,
                str(work / f"v2-{uuid.uuid4().hex[:6]}"),
            ]
        )
    }
    if v3_python:
        out["sdk_v3_local"] = first_line_seconds(
            [
                v3_python,
                str(ROOT / "benchmarks" / "_sdk_v3_local_train.py"),
                IMAGE,
                str(work / f"v3-{uuid.uuid4().hex[:6]}"),
            ],
            cwd=work,
        )
    out["process_cold"] = sm_toolkit_run(work, "process", 0)
    sm_toolkit_run(work / "pool", "process", 60)  # leaves a pool for the next job
    out["process_warm"] = sm_toolkit_run(work / "pool", "process", 60)
    out["docker_cold"] = sm_toolkit_run(work, "docker", 0)
    sm_toolkit_run(work / "pool", "docker", 60)
    out["docker_warm"] = sm_toolkit_run(work / "pool", "docker", 60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--v3-python", help="the python of a venv with SDK v3 (make venv-v3)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sm_toolkit.local.embedded_aws import start_moto

    server, _ = start_moto()
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                rounds.append(round_of(Path(tmp), args.v3_python))
    finally:
        subprocess.run(
            [
                "docker",
                "rm",
                "-f",
                *subprocess.run(
                    ["docker", "ps", "-aq", "--filter", "label=sm-toolkit.job"],
                    capture_output=True,
                    text=True,
                ).stdout.split(),
            ],
            capture_output=True,
        )
        server.stop()
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    base = medians["sdk_v2_local"]
    print(f"{'variant':<14} {'median s':>9} {'x SDK v2':>9}  rounds")
    for key, value in medians.items():
        each = ", ".join(f"{r[key]:.2f}" for r in rounds)
        print(f"{key:<14} {value:9.2f} {value / base:9.2f}  {each}")
    print(
        json.dumps(
            {k: round(v / base, 3) for k, v in medians.items()}
            | {"sdk_v2_local_seconds": round(base, 2)}
        )
    )


if __name__ == "__main__":
    main()
