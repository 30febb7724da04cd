"""boto3 against ``sm-toolkit serve``: only AWS_ENDPOINT_URL differs from code for AWS.

Create, wait with boto3's own waiter, describe; a job stopped while it runs ends Stopped;
List filters, sorting and pages; tags; and every response conforms to botocore's output shape.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.validate import ParamValidator
from endpoint_support import (
    running_endpoint,
    training_request,
    wait_for_script,
)

from sm_toolkit.contract import service_model
from sm_toolkit.endpoint.shapes import service_constraint_errors

pytestmark = pytest.mark.integration
FAST = {"Delay": 1, "MaxAttempts": 120}  # the waiter's own default polls every 120 s


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
def responses():
    return []


@pytest.fixture
def aws(endpoint, monkeypatch, responses):
    """A boto3 session whose clients reach the endpoint; SageMaker responses are kept."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    session = boto3.Session(region_name="us-east-1")

    def keep(http_response, parsed, model, **_):
        if http_response.status_code == 200:  # refusals are checked by test_endpoint_errors
            responses.append((model.name, parsed))

    session.events.register("after-call.sagemaker", keep)
    return session


@pytest.fixture
def sm(aws):
    return aws.client("sagemaker")


@pytest.fixture
def job_bucket(aws, request):
    name = "ep-" + request.node.name.lower().replace("_", "-")[:40]
    aws.client("s3").create_bucket(Bucket=name)
    return name


def assert_conforms(op: str, parsed: dict) -> None:
    shape = service_model().operation_model(op).output_shape
    body = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
    if shape is None:
        assert body == {}
        return
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), f"{op}: {report.generate_report()}"
    assert list(service_constraint_errors(body, shape)) == [], op


def test_create_wait_describe(sm, aws, job_bucket, responses):
    arn = sm.create_training_job(**training_request("boto-ok", job_bucket))["TrainingJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:training-job/boto-ok"
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="boto-ok", WaiterConfig=FAST
    )
    doc = sm.describe_training_job(TrainingJobName="boto-ok")
    assert doc["TrainingJobStatus"] == "Completed"
    assert doc["TrainingJobArn"] == arn
    assert [t["Status"] for t in doc["SecondaryStatusTransitions"]][-1] == "Completed"
    assert doc["TrainingEndTime"] >= doc["CreationTime"]
    model = doc["ModelArtifacts"]["S3ModelArtifacts"]
    key = model.split(f"s3://{job_bucket}/", 1)[1]
    assert aws.client("s3").head_object(Bucket=job_bucket, Key=key)["ContentLength"] > 0
    assert {m["MetricName"] for m in doc["FinalMetricDataList"]} == {"train:loss"}
    for op, parsed in responses:
        assert_conforms(op, parsed)


def test_stop_while_running_ends_stopped(sm, aws, job_bucket, responses):
    sm.create_training_job(**training_request("boto-stop", job_bucket, mode="sleep"))
    wait_for_script(aws.client("logs"), "boto-stop")
    sm.stop_training_job(TrainingJobName="boto-stop")
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="boto-stop", WaiterConfig=FAST
    )
    doc = sm.describe_training_job(TrainingJobName="boto-stop")
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "Stopped")
    with pytest.raises(sm.exceptions.ClientError, match="status Stopped"):
        sm.stop_training_job(TrainingJobName="boto-stop")
    for op, parsed in responses:
        assert_conforms(op, parsed)


def test_name_in_use_and_unknown_job(sm, job_bucket):
    sm.create_training_job(**training_request("boto-twice", job_bucket))
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_training_job(**training_request("boto-twice", job_bucket))
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.describe_training_job(TrainingJobName="no-such-job")
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.stop_training_job(TrainingJobName="no-such-job")


def test_list_filters_sorting_pages(sm, job_bucket, responses):
    names = ["list-b", "list-a", "list-c"]
    for name in names:
        sm.create_training_job(**training_request(name, job_bucket))
    for name in names:
        sm.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName=name, WaiterConfig=FAST
        )
    by_name = sm.list_training_jobs(NameContains="LIST-", SortBy="Name", SortOrder="Descending")
    assert [s["TrainingJobName"] for s in by_name["TrainingJobSummaries"]] == [
        "list-c",
        "list-b",
        "list-a",
    ]
    by_time = sm.list_training_jobs(NameContains="list-", StatusEquals="Completed")
    assert [s["TrainingJobName"] for s in by_time["TrainingJobSummaries"]] == names
    assert (
        sm.list_training_jobs(NameContains="list-", StatusEquals="Failed")["TrainingJobSummaries"]
        == []
    )
    first = sm.list_training_jobs(NameContains="list-", MaxResults=2)
    assert len(first["TrainingJobSummaries"]) == 2 and first["NextToken"]
    rest = sm.list_training_jobs(NameContains="list-", MaxResults=2, NextToken=first["NextToken"])
    assert [s["TrainingJobName"] for s in rest["TrainingJobSummaries"]] == ["list-c"]
    assert "NextToken" not in rest
    paged = [
        s["TrainingJobName"]
        for page in sm.get_paginator("list_training_jobs").paginate(
            NameContains="list-", PaginationConfig={"PageSize": 1}
        )
        for s in page["TrainingJobSummaries"]
    ]
    assert paged == names
    created = sm.describe_training_job(TrainingJobName="list-a")["CreationTime"]
    after = sm.list_training_jobs(NameContains="list-", CreationTimeAfter=created)
    assert [s["TrainingJobName"] for s in after["TrainingJobSummaries"]] == ["list-c"]
    for op, parsed in responses:
        assert_conforms(op, parsed)


def test_tags(sm, job_bucket, responses):
    arn = sm.create_training_job(
        **training_request("boto-tags", job_bucket, Tags=[{"Key": "team", "Value": "vision"}])
    )["TrainingJobArn"]
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "vision"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "cost", "Value": "42"}])
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "cost", "Value": "42"}]
    with pytest.raises(sm.exceptions.ClientError, match="ValidationException"):
        sm.list_tags(ResourceArn=arn.replace("boto-tags", "nothing-here"))
    for op, parsed in responses:
        assert_conforms(op, parsed)
