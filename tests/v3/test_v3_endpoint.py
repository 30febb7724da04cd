"""SDK v3 against ``sm-toolkit serve``: a user's ModelTrainer with Torchrun on 2 instances and
v3's HyperparameterTuner, unchanged but for AWS_ENDPOINT_URL (process backend, embedded S3).

v3 validates the role with IAM SimulatePrincipalPolicy, which moto lacks: the client sets
SAGEMAKER_VALIDATE_ROLE=false (as a user pointing v3 at moto would) and the role exists in
the endpoint's IAM, where v3's GetRole finds it. The session gets a default bucket, which
keeps v3 off STS.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # the endpoint helpers, shared with v2

from endpoint_support import ROLE, running_endpoint  # noqa: E402
from sagemaker.core.helper.session_helper import Session  # noqa: E402
from sagemaker.core.parameter import ContinuousParameter  # noqa: E402
from sagemaker.core.utils.logs import CloudWatchLogsClient  # noqa: E402
from sagemaker.core.utils.utils import SageMakerClient, SingletonMeta  # noqa: E402
from sagemaker.train import ModelTrainer  # noqa: E402
from sagemaker.train.configs import Compute, OutputDataConfig, SourceCode  # noqa: E402
from sagemaker.train.distributed import Torchrun  # noqa: E402
from sagemaker.train.tuner import HyperparameterTuner  # noqa: E402

pytestmark = pytest.mark.integration
SCRIPT_DIR = ROOT / "tests" / "fixtures" / "v3_torchrun"
BUCKET = "v3-user-bucket"
# The process backend runs the request's launch contract on this machine's Python; the
# image name is only recorded (the docker backend would run it).
IMAGE = "sm-toolkit:latest"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _forget_sdk_clients() -> None:
    SageMakerClient.reset()
    SingletonMeta._instances.pop(CloudWatchLogsClient, None)


@pytest.fixture(autouse=True)
def fresh_sdk_clients():
    """v3 caches its boto3 clients for the whole process (SageMakerClient and the logs
    client, a singleton); one made against this module's endpoint must not outlive it:
    later modules talk to their own moto."""
    _forget_sdk_clients()
    yield
    _forget_sdk_clients()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
def session(endpoint, monkeypatch):
    return user_session(endpoint.url, monkeypatch)


def user_session(url: str, monkeypatch) -> Session:
    """The user's v3 session, pointed at the endpoint by AWS_ENDPOINT_URL alone."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    boto = boto3.Session(region_name="us-east-1")
    boto.client("s3").create_bucket(Bucket=BUCKET)
    iam = boto.client("iam")
    try:
        iam.create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return Session(boto_session=boto, default_bucket=BUCKET)


def trainer(session: Session, name: str, count: int, **hyperparameters) -> ModelTrainer:
    """The user's ModelTrainer for the Torchrun script."""
    return ModelTrainer(
        sagemaker_session=session,
        role=ROLE,
        base_job_name=name,
        training_image=IMAGE,
        source_code=SourceCode(source_dir=str(SCRIPT_DIR), entry_script="train.py"),
        distributed=Torchrun(),
        compute=Compute(instance_type="ml.m5.xlarge", instance_count=count),
        hyperparameters=hyperparameters,
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{BUCKET}/output"),
    )


def test_model_trainer_torchrun_on_two_instances(session, caplog):
    caplog.set_level(logging.INFO, logger="sagemaker.core.resources")  # v3's log printer
    mt = trainer(session, "v3-torchrun", 2, ranks=2)
    mt.train(wait=True)  # logs=True: v3 streams the hosts' CloudWatch logs

    streamed = caplog.text
    for rank in (0, 1):  # each host's stream, read by v3 from CloudWatch Logs
        assert f"rank={rank} world=2 allreduce=3.0" in streamed
    check_two_rank_job(session, mt._latest_training_job.training_job_name)


@pytest.mark.container
def test_model_trainer_torchrun_in_the_image(tmp_path, monkeypatch):
    """The same job on ``serve --backend docker``: two containers on the job's network."""
    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    if found.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have built {IMAGE}", pytrace=False)
        pytest.skip(f"docker or {IMAGE} missing")
    with running_endpoint(tmp_path / "serve", "--backend", "docker") as served:
        session = user_session(served.url, monkeypatch)
        mt = trainer(session, "v3-torchrun-docker", 2, ranks=2)
        mt.train(wait=True, logs=False)
        check_two_rank_job(session, mt._latest_training_job.training_job_name)


def check_two_rank_job(session: Session, name: str) -> None:
    """Completed on 2 instances; rank 0's model, with gloo's sum of 1 + 2, in the user's S3."""
    doc = session.sagemaker_client.describe_training_job(TrainingJobName=name)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert doc["ResourceConfig"]["InstanceCount"] == 2
    bucket, key = doc["ModelArtifacts"]["S3ModelArtifacts"][len("s3://") :].split("/", 1)
    assert bucket == BUCKET
    body = session.boto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        # 2 ranks, one per instance: 1 + 2 summed by gloo's all-reduce
        assert tar.extractfile("model.txt").read() == b"world=2 allreduce=3.0"


def test_v3_hyperparameter_tuner_finds_a_best_job(session):
    """v3's tuner sends its trials in script mode (sagemaker_program, no ContainerEntrypoint;
    AWS runs them with the image's own launcher, one process), so the script is plain."""
    mt = ModelTrainer(
        sagemaker_session=session,
        role=ROLE,
        base_job_name="v3-trial",
        training_image=IMAGE,
        source_code=SourceCode(source_dir=str(SCRIPT_DIR), entry_script="tune.py"),
        compute=Compute(instance_type="ml.m5.xlarge", instance_count=1),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{BUCKET}/output"),
    )
    tuner = HyperparameterTuner(
        model_trainer=mt,
        objective_metric_name="valid:loss",
        objective_type="Minimize",
        hyperparameter_ranges={"lr": ContinuousParameter(0.01, 1.0)},
        metric_definitions=[{"Name": "valid:loss", "Regex": r"valid:loss=([0-9.]+)"}],
        strategy="Random",
        max_jobs=3,
        max_parallel_jobs=1,
    )
    tuner.tune(wait=True)

    name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    doc = session.sagemaker_client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name
    )
    assert doc["HyperParameterTuningJobStatus"] == "Completed"
    assert doc["TrainingJobStatusCounters"]["Completed"] == 3
    best = doc["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == "valid:loss"
    lr = float(best["TunedHyperParameters"]["lr"])
    value = best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    assert value == pytest.approx((lr - 0.3) ** 2, abs=1e-5)
    trials = session.sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name
    )["TrainingJobSummaries"]
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials]
    assert len(values) == 3 and value == min(values)
    trial = session.sagemaker_client.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert trial["TrainingJobStatus"] == "Completed"
