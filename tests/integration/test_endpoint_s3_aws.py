"""``sm-toolkit serve --s3 aws``: compute here, S3 on the user's own AWS settings.

The "user's AWS" is the test session's moto server (the client's and the server's
AWS_ENDPOINT_URL); the client sets only AWS_ENDPOINT_URL_SAGEMAKER (and
AWS_ENDPOINT_URL_CLOUDWATCH_LOGS for the logs) to the endpoint. The job's code and data come
from that S3 and its model lands there; the endpoint's own S3 refuses requests.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile

import boto3
import pytest
from botocore.exceptions import ClientError
from endpoint_support import (
    USERSCRIPT,
    log_lines,
    running_endpoint,
    serve_command,
    server_env,
    training_request,
)

pytestmark = pytest.mark.integration


def tarball(folder) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder / "train.py", arcname="train.py")
    return buf.getvalue()


def test_job_reads_and_writes_the_users_own_s3(s3, bucket, tmp_path, monkeypatch):
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=tarball(USERSCRIPT))
    s3.put_object(Bucket=bucket, Key="data/train/part-0.csv", Body=b"1,2\n")
    with running_endpoint(tmp_path / "serve", "--s3", "aws") as served:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", served.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", served.url)
        sm = boto3.client("sagemaker", region_name="us-east-1")
        request = training_request("s3-aws-job", bucket)
        request["HyperParameters"]["sagemaker_submit_directory"] = (
            f'"s3://{bucket}/code/sourcedir.tar.gz"'
        )
        request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = (
            f"s3://{bucket}/data/train"
        )
        sm.create_training_job(**request)
        sm.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName="s3-aws-job", WaiterConfig={"Delay": 1, "MaxAttempts": 180}
        )
        doc = sm.describe_training_job(TrainingJobName="s3-aws-job")
        lines = log_lines(boto3.client("logs", region_name="us-east-1"), "s3-aws-job")
        with pytest.raises(ClientError) as refused:  # the endpoint's own S3 is not in use
            boto3.client("s3", endpoint_url=served.url).list_buckets()

    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert "channel train: ['part-0.csv']" in lines  # the data came from the user's S3
    key = "output/s3-aws-job/output/model.tar.gz"
    assert doc["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/{key}"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # the session's moto
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("weights.txt").read() == b"1.0"
    error = refused.value.response["Error"]  # in S3's own error format, so the client says why
    assert error["Code"] == "InvalidRequest" and "AWS_ENDPOINT_URL_SAGEMAKER" in error["Message"]
    assert "set AWS_ENDPOINT_URL_SAGEMAKER=" + served.url in served.text()


def test_the_servers_s3_must_not_be_the_endpoint_itself(tmp_path):
    with socket.socket() as probe:  # a port free now, for the server to bind
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    own = f"http://127.0.0.1:{port}"
    done = subprocess.run(
        serve_command(tmp_path / "serve", "--s3", "aws", "--port", str(port)),
        capture_output=True,
        text=True,
        env=server_env(AWS_ENDPOINT_URL=own),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sm-toolkit: error: AWS_ENDPOINT_URL: '{own}' is not allowed; the S3 of your AWS "
        "settings under --s3 aws, not this endpoint (it serves no S3 then); unset it in the "
        "server's shell, or use --s3 embedded"
    ]
