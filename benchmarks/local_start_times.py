"""Start times of ``run --local``: process backend vs docker backend vs docker with a warm pool.

The same job each time: entrypoints/train_cnn.py at the ``debug`` size, 1 epoch, one thread,
its ``train`` channel (digits.npz) in a moto S3 on 127.0.0.1. The start time is what the
summary calls StartupSeconds: job start (request, staging, containers) to the line
sagemaker-training prints as it starts the user's script. The warm-pool figure is the second
of two matching jobs with ``warm_pool.keep_alive_seconds: 600`` (its channel data reused).
Needs Docker and the image from ``make build``.

    .venv/bin/python benchmarks/local_start_times.py            # 3 rounds, ~2.5 min
    .venv/bin/python benchmarks/local_start_times.py --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-start-times"


def _start_s3():
    """A moto server on 127.0.0.1 that every AWS client of this process talks to."""
    import logging

    from moto.server import ThreadedMotoServer

    for name in ("werkzeug", "botocore", "moto"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return server


def _spec(warm_pool: bool):
    from sm_toolkit.spec import parse_spec

    return parse_spec(
        {
            "name": "cnn-start",
            "entry_point": "train_cnn.py",
            "hyperparameters": {"size": "debug", "epochs": 1, "threads": 1},
            "image_uri": "sm-toolkit:latest",
            "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
            "instance": {"type": "ml.c5.xlarge"},
            "inputs": {"train": f"s3://{BUCKET}/data/digits"},
            "output_path": f"s3://{BUCKET}/output",
            **({"warm_pool": {"keep_alive_seconds": 600}} if warm_pool else {}),
        },
        base_dir=ROOT,
    )


def _round(i: int, work: Path, image: str) -> dict[str, float]:
    from sm_toolkit.local.docker_job import run_job_docker_spec
    from sm_toolkit.local.process import run_job

    process = run_job(_spec(False), job_name=f"p{i}", workdir=work / f"p{i}")
    docker = run_job_docker_spec(
        _spec(False), job_name=f"d{i}", workdir=work / f"d{i}", image=image
    )
    pool_dir = work / f"w{i}"
    run_job_docker_spec(_spec(True), job_name=f"w{i}a", workdir=pool_dir, image=image)
    warm = run_job_docker_spec(_spec(True), job_name=f"w{i}b", workdir=pool_dir, image=image)
    for result in (process, docker, warm):
        assert result.status == "Completed", result.failure_reason
    assert warm.warm_pool == "Reused"
    return {
        "process": process.startup_seconds,
        "docker": docker.startup_seconds,
        "docker, warm pool reused": warm.startup_seconds,
        "process (whole job)": process.seconds,
        "docker (whole job)": docker.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="sm-toolkit:latest")
    args = parser.parse_args()
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    server = _start_s3()
    try:
        import boto3

        from sm_toolkit.train.datasets import write_digits_npz

        work = Path(tempfile.mkdtemp(prefix="start-times-"))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(write_digits_npz(work / "data")), BUCKET, "data/digits/digits.npz")
        rounds = [_round(i, work, args.image) for i in range(args.rounds)]
    finally:
        server.stop()
    print(f"seconds, {args.rounds} rounds (median, then each round):")
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:26s} {statistics.median(values):6.2f}   [{each}]")


if __name__ == "__main__":
    main()
