"""``make demo``: train the CNN locally, with S3 served by an embedded moto on 127.0.0.1.

No AWS account and no network: every AWS client points at the embedded moto, scikit-learn's
digits are uploaded as the ``train`` channel, and examples/cnn-local.yaml runs through the
local engine (spec -> the SDK's CreateTrainingJob request -> engine -> process backend),
which prints the DescribeTrainingJob document, the metrics and the artifacts.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from sm_toolkit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "cnn-local.yaml"


def run_demo(workdir: Path = Path(".sm-toolkit/demo")) -> int:
    """Run the demo; returns the process exit code."""
    import boto3

    from sm_toolkit.aws.local_request import local_training_request
    from sm_toolkit.aws.names import unique_name
    from sm_toolkit.local.embedded_aws import start_moto
    from sm_toolkit.local.engine import run_training_job
    from sm_toolkit.local.record import to_json
    from sm_toolkit.local.s3 import split_uri
    from sm_toolkit.train.datasets import write_digits_npz

    spec = load_spec(SPEC)
    server, endpoint = start_moto()
    try:
        s3 = boto3.client("s3", region_name=spec.region)
        bucket, prefix = split_uri(spec.inputs["train"])
        s3.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory() as tmp:
            data = write_digits_npz(Path(tmp))
            s3.upload_file(str(data), bucket, f"{prefix}/{data.name}")
        print(
            f"[demo] moto S3 on {endpoint}; uploaded digits to {spec.inputs['train']}; "
            f"running {SPEC.name} locally",
            flush=True,
        )
        request = local_training_request(spec, unique_name(spec.name, tuning=False))
        doc = run_training_job(
            request, workdir=workdir, on_line=lambda text: print(text, flush=True)
        )
        print(to_json(doc))
        if doc["TrainingJobStatus"] != "Completed":
            print(f"[demo] job {doc['TrainingJobStatus']}: {doc.get('FailureReason')}")
            return 1
        _show_artifacts(s3, doc)
        return 0
    finally:
        server.stop()


def _show_artifacts(s3, doc: dict) -> None:
    from sm_toolkit.local.s3 import split_uri

    bucket, key = split_uri(doc["ModelArtifacts"]["S3ModelArtifacts"])
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key.rsplit("/", 1)[0])
    for obj in listing.get("Contents", []):
        print(f"[demo] s3://{bucket}/{obj['Key']} ({obj['Size']} bytes, in moto)")
    body = s3.get_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as tar:
        names = [n for n in tar.getnames() if n.endswith((".png", ".json"))]
    print(f"[demo] plots and reports in output.tar.gz: {', '.join(sorted(names)) or 'none'}")
    metrics = {m["MetricName"]: m["Value"] for m in doc.get("FinalMetricDataList", [])}
    for name in ("test:accuracy", "val:accuracy"):
        if name in metrics:
            print(f"[demo] {name} = {metrics[name]:.4f}")
