"""Bad requests get the service's error shape: HTTP 400, ``__type`` and a message naming the
field, never a 500.

Tried: an unknown field, a name of 64 characters, a name with an underscore, a missing
RoleArn, a wrong type (InstanceCount as text), an enum value botocore lets through
(TrainingInputMode "Foo"), KeepAlivePeriodInSeconds above the model's maximum, a body that
is not JSON, a NextToken this endpoint never issued. botocore refuses most of these before
sending, so the client here sends the body itself (raw HTTP, signed as botocore signs) or
turns botocore's own validation off, as a client of another language would.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from endpoint_support import running_endpoint, training_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        yield served


def post(url: str, operation: str, body: bytes | dict) -> tuple[int, dict]:
    """One signed awsJson1_1 SageMaker call; returns (HTTP status, JSON body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=data,
        headers={
            "X-Amz-Target": f"SageMaker.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    credentials = boto3.Session(region_name="us-east-1").get_credentials()
    SigV4Auth(credentials, "sagemaker", "us-east-1").add_auth(request)
    raw = urllib.request.Request(
        url + "/", data=data, method="POST", headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def refused(url: str, body: bytes | dict, operation: str = "CreateTrainingJob") -> str:
    status, payload = post(url, operation, body)
    assert status == 400, payload
    assert payload["__type"] == "ValidationException", payload
    return payload["message"]


def test_unknown_field(endpoint):
    body = {**training_request("bad-unknown", "b"), "InstanceCountt": 2}
    assert '"InstanceCountt"' in refused(endpoint.url, body)


def test_name_too_long_and_bad_characters(endpoint):
    message = refused(endpoint.url, training_request("n" * 64, "b"))
    assert "'trainingJobName'" in message and "less than or equal to 63" in message
    message = refused(endpoint.url, training_request("bad_name", "b"))
    assert "'trainingJobName'" in message and "pattern" in message


def test_missing_role(endpoint):
    body = training_request("bad-role", "b")
    del body["RoleArn"]
    assert '"RoleArn"' in refused(endpoint.url, body)


def test_wrong_type_enum_and_maximum(endpoint):
    body = training_request("bad-type", "b")
    body["ResourceConfig"]["InstanceCount"] = "2"
    assert "ResourceConfig.InstanceCount" in refused(endpoint.url, body)
    body = training_request("bad-enum", "b")
    body["AlgorithmSpecification"]["TrainingInputMode"] = "Foo"
    message = refused(endpoint.url, body)
    assert "'algorithmSpecification.trainingInputMode'" in message and "Pipe" in message
    body = training_request("bad-keepalive", "b")
    body["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 99999
    assert "'resourceConfig.keepAlivePeriodInSeconds'" in refused(endpoint.url, body)


def test_not_json_and_foreign_token(endpoint):
    status, payload = post(endpoint.url, "CreateTrainingJob", b"{not json")
    assert (status, payload["__type"]) == (400, "SerializationException")
    assert "nextToken" in refused(endpoint.url, {"NextToken": "bm9wZQ=="}, "ListTrainingJobs")


def test_boto3_without_client_validation_gets_the_service_error(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    sm = boto3.client(
        "sagemaker", region_name="us-east-1", config=Config(parameter_validation=False)
    )
    body = training_request("t" * 70, "b")
    with pytest.raises(sm.exceptions.ClientError) as err:
        sm.create_training_job(**body)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Nothing was created by the refused requests.
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
