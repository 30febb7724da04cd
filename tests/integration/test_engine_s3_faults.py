"""S3 faults: a proxy on 127.0.0.1 in front of the session's moto fails 20 % of requests with
S3's own 500/503 errors. Five jobs (code from sourcedir.tar.gz, a multi-file channel,
checkpoints) must all complete with nothing lost: staging, the checkpoint sync and the
artifact upload retry (botocore's standard retry mode) instead of giving up."""

from __future__ import annotations

import http.client
import io
import json
import random
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from sm_toolkit.local.engine import run_training_job

ROOT = Path(__file__).resolve().parents[2]
USERSCRIPT = ROOT / "tests" / "fixtures" / "userscript"
ROLE = "arn:aws:iam::123456789012:role/SageMakerTrainingRole"
pytestmark = pytest.mark.integration
ERRORS = [
    (500, "InternalError", "We encountered an internal error. Please try again."),
    (503, "SlowDown", "Please reduce your request rate."),
]


class FaultyProxy:
    """Forwards to ``upstream``; fails a seeded ``rate`` of the requests, before they reach it."""

    def __init__(self, upstream: str, rate: float, seed: int = 7) -> None:
        self.rate, self.rng, self.lock = rate, random.Random(seed), threading.Lock()
        self.failed = self.passed = 0
        target = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    fail = proxy.rng.random() < proxy.rate
                    proxy.failed += fail
                    proxy.passed += not fail
                if fail:
                    status, code, message = proxy.rng.choice(ERRORS)
                    xml = (
                        f"<?xml version='1.0'?><Error><Code>{code}</Code>"
                        f"<Message>{message}</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = target.netloc
                conn.request(self.command, self.path, body=body or None, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def code_tar(s3, bucket: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(USERSCRIPT / "train.py", arcname="train.py")
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=buf.getvalue())
    return f"s3://{bucket}/code/sourcedir.tar.gz"


def request(name: str, bucket: str, code: str) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "sm-toolkit:latest",
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "HyperParameters": {
            "epochs": "2",
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(code),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "CheckpointConfig": {"S3Uri": f"s3://{bucket}/ckpt/{name}"},
        "Environment": {"SM_CHECKPOINT_DIR": "/opt/ml/checkpoints"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def test_five_jobs_through_a_faulty_s3_lose_nothing(
    s3, bucket, moto_endpoint, tmp_path, monkeypatch
):
    for i in range(8):
        s3.put_object(Bucket=bucket, Key=f"data/part-{i}.csv", Body=f"{i}\n".encode() * 100)
    code = code_tar(s3, bucket)
    with FaultyProxy(moto_endpoint, rate=0.2) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the engine's S3 goes through it
        docs = [
            run_training_job(request(f"faulty-{i}", bucket, code), workdir=tmp_path)
            for i in range(5)
        ]
    print(f"proxy: {proxy.failed} requests failed, {proxy.passed} passed")
    assert proxy.failed >= 5, "the proxy injected faults"
    for i, doc in enumerate(docs):
        assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
        staged = tmp_path / f"jobs/faulty-{i}/attempt-0/algo-1/opt/ml/input/data/train"
        assert sorted(p.name for p in staged.iterdir()) == [f"part-{n}.csv" for n in range(8)]
        for key in (
            f"output/faulty-{i}/output/model.tar.gz",
            f"output/faulty-{i}/output/output.tar.gz",
            f"ckpt/faulty-{i}/run-0.txt",
        ):
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0, key
        assert all(
            "not uploaded" not in t["StatusMessage"] for t in doc["SecondaryStatusTransitions"]
        )
