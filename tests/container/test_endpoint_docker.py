"""``sm-toolkit serve --backend docker``: a boto3 CreateTrainingJob of a user's script runs in
the image, the waiter sees Completed, the model is in the endpoint's S3 and the script's
lines are in CloudWatch Logs."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from endpoint_support import log_lines, running_endpoint, training_request  # noqa: E402


def test_boto3_job_runs_in_the_image(image, tmp_path, monkeypatch):
    with running_endpoint(tmp_path / "serve", "--backend", "docker") as served:
        monkeypatch.setenv("AWS_ENDPOINT_URL", served.url)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="docker-serve")
        sm = boto3.client("sagemaker", region_name="us-east-1")
        request = training_request("docker-serve-job", "docker-serve")
        request["AlgorithmSpecification"]["TrainingImage"] = image
        sm.create_training_job(**request)
        sm.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName="docker-serve-job", WaiterConfig={"Delay": 1, "MaxAttempts": 240}
        )
        doc = sm.describe_training_job(TrainingJobName="docker-serve-job")
        lines = log_lines(boto3.client("logs", region_name="us-east-1"), "docker-serve-job")
        key = doc["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
        body = (
            boto3.client("s3", region_name="us-east-1")
            .get_object(Bucket="docker-serve", Key=key)["Body"]
            .read()
        )

    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("weights.txt").read() == b"1.0"
    assert any(line.startswith("channel train:") for line in lines)  # the script's own line
    assert any("train:loss=" in line for line in lines)
    losses = {m["MetricName"] for m in doc.get("FinalMetricDataList", [])}
    assert "train:loss" in losses
