"""SDK v2 against ``sm-toolkit serve``: a user's PyTorch estimator, unchanged but for
AWS_ENDPOINT_URL. ``fit(wait=True, logs=True)`` streams the job's log from CloudWatch Logs,
the model lands in S3, and TrainingJobAnalytics reads the metric series from CloudWatch.

The session gets a default bucket and the role a full ARN, as a user on AWS may do: that
keeps the SDK off STS, whose endpoint the SDK hard-codes (it would leave loopback).
"""

from __future__ import annotations

import boto3
import pytest
import sagemaker
from endpoint_support import ROLE, USERSCRIPT, running_endpoint
from sagemaker.analytics import TrainingJobAnalytics
from sagemaker.pytorch import PyTorch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
def session(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    boto = boto3.Session(region_name="us-east-1")
    boto.client("s3").create_bucket(Bucket="sdk-user-bucket")
    return sagemaker.Session(boto_session=boto, default_bucket="sdk-user-bucket")


def test_pytorch_fit_streams_logs_and_lands_the_model(session, capfd):
    metric = "train:loss"
    estimator = PyTorch(
        entry_point="train.py",
        source_dir=str(USERSCRIPT),
        role=ROLE,
        image_uri="sm-toolkit:latest",
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"epochs": 3, "mode": "ok", "scale": 2.0},
        metric_definitions=[{"Name": metric, "Regex": metric + r"=([0-9.]+)"}],
        sagemaker_session=session,
        disable_profiler=True,
        debugger_hook_config=False,
    )
    estimator.fit(wait=True, logs=True, job_name="sdk-v2-fit")

    printed = capfd.readouterr().out
    assert f"{metric}=" in printed  # the script's own lines, streamed by logs_for_job
    assert "Completed - " in printed  # the status transitions, printed by the SDK
    doc = session.sagemaker_client.describe_training_job(TrainingJobName="sdk-v2-fit")
    assert doc["TrainingJobStatus"] == "Completed"
    bucket, key = estimator.model_data[len("s3://") :].split("/", 1)
    s3 = session.boto_session.client("s3")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    series = TrainingJobAnalytics(
        "sdk-v2-fit", metric_names=[metric], sagemaker_session=session
    ).dataframe()
    assert len(series) >= 1 and set(series["metric_name"]) == {metric}
    assert series["value"].min() > 0


def test_spot_checkpoints_and_a_warm_pool_the_second_fit_reuses(session):
    """checkpoint_s3_uri, use_spot_instances + max_wait, keep_alive_period_in_seconds: the
    second fit takes the first one's warm pool and finds its checkpoint; UpdateTrainingJob
    with keep-alive 0 ends the pool."""

    def estimator() -> PyTorch:
        return PyTorch(
            entry_point="train.py",
            source_dir=str(USERSCRIPT),
            role=ROLE,
            image_uri="sm-toolkit:latest",
            instance_type="ml.m5.large",
            instance_count=1,
            hyperparameters={"epochs": 2},
            # The script keeps its checkpoints where SM_CHECKPOINT_DIR says (the
            # toolkit's convention); CheckpointConfig.LocalPath is SageMaker's default.
            environment={"SM_CHECKPOINT_DIR": "/opt/ml/checkpoints"},
            checkpoint_s3_uri="s3://sdk-user-bucket/checkpoints/pool",
            use_spot_instances=True,
            max_run=600,
            max_wait=1200,
            keep_alive_period_in_seconds=300,
            sagemaker_session=session,
            disable_profiler=True,
            debugger_hook_config=False,
        )

    estimator().fit(wait=True, logs=True, job_name="sdk-v2-pool-1")
    estimator().fit(wait=True, logs=True, job_name="sdk-v2-pool-2")
    sm = session.sagemaker_client
    first = sm.describe_training_job(TrainingJobName="sdk-v2-pool-1")
    second = sm.describe_training_job(TrainingJobName="sdk-v2-pool-2")
    assert (
        first["EnableManagedSpotTraining"]
        and first["StoppingCondition"]["MaxWaitTimeInSeconds"] == 1200
    )
    assert first["WarmPoolStatus"]["Status"] == "Reused"
    assert first["WarmPoolStatus"]["ReusedByJob"] == "sdk-v2-pool-2"
    assert second["WarmPoolStatus"]["Status"] == "Available"
    # The script counts the runs it found in its checkpoint folder: the second found one.
    keys = [
        o["Key"]
        for o in session.boto_session.client("s3").list_objects_v2(
            Bucket="sdk-user-bucket", Prefix="checkpoints/pool/"
        )["Contents"]
    ]
    assert keys == ["checkpoints/pool/run-0.txt", "checkpoints/pool/run-1.txt"]
    sm.update_training_job(
        TrainingJobName="sdk-v2-pool-2", ResourceConfig={"KeepAlivePeriodInSeconds": 0}
    )
    ended = sm.describe_training_job(TrainingJobName="sdk-v2-pool-2")["WarmPoolStatus"]
    assert ended["Status"] == "Terminated"
