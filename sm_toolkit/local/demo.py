"""``make demo``: train the CNN locally, with S3 served by an embedded moto on 127.0.0.1.

No AWS account and no network: the demo points every AWS client at its own moto server,
uploads scikit-learn's digits as the ``train`` channel, runs examples/cnn-local.yaml
through the SageMaker container contract, and prints the metrics and artifacts.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from sm_toolkit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "cnn-local.yaml"


def _start_s3() -> object:
    import logging

    from moto.server import ThreadedMotoServer

    for name in ("werkzeug", "botocore", "moto"):  # request logs would drown the training log
        logging.getLogger(name).setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return server


def run_demo(workdir: Path = Path(".sm-toolkit/demo")) -> int:
    """Run the demo; returns the process exit code."""
    import boto3

    from sm_toolkit.local.process import dumps, run_job
    from sm_toolkit.local.s3 import split_uri
    from sm_toolkit.train.datasets import write_digits_npz

    spec = load_spec(SPEC)
    server = _start_s3()
    try:
        s3 = boto3.client("s3", region_name=spec.region)
        bucket, prefix = split_uri(spec.inputs["train"])
        s3.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory() as tmp:
            data = write_digits_npz(Path(tmp))
            s3.upload_file(str(data), bucket, f"{prefix}/{data.name}")
        print(
            f"[demo] moto S3 on {os.environ['AWS_ENDPOINT_URL']}; uploaded digits to "
            f"{spec.inputs['train']}; running {SPEC.name} locally",
            flush=True,
        )
        result = run_job(
            spec, job_name=spec.name, workdir=workdir, on_line=lambda line: print(line, flush=True)
        )
        print(dumps(result))
        if result.status != "Completed":
            print(f"[demo] job {result.status}: {result.failure_reason}")
            return 1
        _show_artifacts(s3, result)
        return 0
    finally:
        server.stop()


def _show_artifacts(s3, result) -> None:
    from sm_toolkit.local.s3 import split_uri

    bucket, key = split_uri(result.model_artifacts)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key.rsplit("/", 1)[0])
    for obj in listing.get("Contents", []):
        print(f"[demo] s3://{bucket}/{obj['Key']} ({obj['Size']} bytes, in moto)")
    with tarfile.open(result.base_dir.parent / "output.tar.gz") as tar:
        names = [n for n in tar.getnames() if n.endswith((".png", ".json"))]
    print(
        f"[demo] plots and reports: {', '.join(sorted(names)) or 'none'} "
        f"(unpacked in {result.base_dir / 'output' / 'data'})"
    )
    for name in ("test:accuracy", "val:accuracy"):
        if name in result.final_metrics:
            print(f"[demo] {name} = {result.final_metrics[name]:.4f}")
