"""A DescribeTrainingJob document becomes a CreateTrainingJob request that botocore accepts."""

from __future__ import annotations

import datetime as dt
import re

import botocore.session
from botocore.validate import ParamValidator

from sm_toolkit.aws.names import replay_name
from sm_toolkit.aws.replay import replay_request

DESCRIBED = {
    "TrainingJobName": "job-on-aws",
    "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/job-on-aws",
    "TuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/t",
    "TrainingJobStatus": "Failed",
    "SecondaryStatus": "Failed",
    "FailureReason": "AlgorithmError: boom",
    "CreationTime": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
    "ModelArtifacts": {"S3ModelArtifacts": "s3://b/out/job-on-aws/output/model.tar.gz"},
    "RoleArn": "arn:aws:iam::123456789012:role/R",
    "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
    "HyperParameters": {"lr": "5.0"},
    "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 5},
    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    "Environment": {"A": "1"},
    "ResponseMetadata": {"HTTPStatusCode": 200},
}


def test_only_create_members_are_kept_and_the_name_is_new():
    replay = replay_request(DESCRIBED, "job-on-aws-replay-1")
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(replay.request, shape)
    assert not report.has_errors(), report.generate_report()
    assert replay.request["TrainingJobName"] == "job-on-aws-replay-1"
    assert replay.request["HyperParameters"] == {"lr": "5.0"}
    assert replay.request["ResourceConfig"]["InstanceCount"] == 2
    assert replay.dropped == (
        "CreationTime",
        "FailureReason",
        "ModelArtifacts",
        "SecondaryStatus",
        "TrainingJobArn",
        "TrainingJobStatus",
        "TuningJobArn",
    )


def test_replay_names_fit_the_name_pattern():
    now = dt.datetime(2026, 12, 1, 23, 59, 1, 123456)
    assert replay_name("job", now) == "job-replay-20261201235901123"
    long = replay_name("x" * 63, now)
    assert len(long) == 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", long)
