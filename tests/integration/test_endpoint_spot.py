"""A simulated spot reclaim through the endpoint: the documented tag
``sm-toolkit:interrupt-after-seconds`` on an EnableManagedSpotTraining job makes the engine
interrupt it once, and the job restarts; DescribeTrainingJob shows it as AWS does."""

from __future__ import annotations

import boto3
import pytest
from endpoint_support import running_endpoint, training_request, wait_for

from sm_toolkit.endpoint.training import INTERRUPT_TAG

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        boto3.client("s3", region_name="us-east-1", endpoint_url=served.url).create_bucket(
            Bucket="spot-bucket"
        )
        yield boto3.client("sagemaker", region_name="us-east-1", endpoint_url=served.url)


def spot_request(name: str, after: str) -> dict:
    # "resume": 0.5 s epochs, state in the checkpoint folder; a quick script could end before
    # the reclaim comes.
    request = training_request(
        name,
        "spot-bucket",
        mode="resume",
        epochs=6,
        EnableManagedSpotTraining=True,
        CheckpointConfig={"S3Uri": f"s3://spot-bucket/checkpoints/{name}"},
        Environment={"SM_CHECKPOINT_DIR": "/opt/ml/checkpoints"},  # where the script keeps state
        Tags=[{"Key": INTERRUPT_TAG, "Value": after}],
    )
    request["StoppingCondition"]["MaxWaitTimeInSeconds"] = 1200
    return request


def test_interrupted_once_then_completed(sm):
    sm.create_training_job(**spot_request("spot-once", "0.5"))
    doc = wait_for(
        lambda: (
            (d := sm.describe_training_job(TrainingJobName="spot-once"))["TrainingJobStatus"]
            != "InProgress"
            and d
        ),
        timeout=300,
        every=0.5,
    )
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    steps = [t["Status"] for t in doc["SecondaryStatusTransitions"]]
    assert steps.count("Interrupted") == 1
    assert steps.index("Interrupted") < steps.index("Restarting") < steps.index("Completed")
    assert doc["BillableTimeInSeconds"] >= 1


def test_tag_value_must_be_seconds(sm):
    with pytest.raises(sm.exceptions.ClientError, match="ValidationException.*interrupt-after"):
        sm.create_training_job(**spot_request("spot-bad", "soon"))
