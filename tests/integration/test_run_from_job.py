"""``sm-toolkit run --from-job NAME --local``: a job recorded by SageMaker (here moto on
127.0.0.1, the test session's AWS) is rerun on this machine from its own description: its
code tarball and input data from S3, its hyperparameters, a new job name.

Bad inputs tried: a job that does not exist (one line, exit 2), --from-job without --local.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import WaiterError
from endpoint_support import ROLE, SM_TOOLKIT, running_endpoint, server_env, training_request

pytestmark = pytest.mark.integration

# A user's own script: it reads its data and fails on a learning rate it cannot take.
SCRIPT = """\
import argparse, os
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
args = p.parse_args()
rows = Path(os.environ["SM_CHANNEL_TRAIN"], "rows.csv").read_text().splitlines()
print(f"read {len(rows)} rows, lr={args.lr}")
if args.lr > 1:
    raise ValueError(f"lr={args.lr} diverges: loss is nan after {len(rows)} rows")
Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text(f"lr={args.lr} rows={len(rows)}")
"""


def sourcedir_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = SCRIPT.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def create_job_on_aws(s3, bucket: str, name: str, lr: str) -> None:
    """What a user's job on SageMaker left behind: code and data in S3, and the job."""
    s3.put_object(Bucket=bucket, Key=f"{name}/source/sourcedir.tar.gz", Body=sourcedir_tarball())
    s3.put_object(Bucket=bucket, Key="data/train/rows.csv", Body=b"1,2\n3,4\n5,6\n")
    boto3.client("sagemaker").create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
            "pytorch-training:2.2.0-cpu-py310",
            "TrainingInputMode": "File",
        },
        HyperParameters={
            "lr": lr,
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{bucket}/{name}/source/sourcedir.tar.gz"',
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/data/train",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )


def run_from_job(name: str, cwd: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SM_TOOLKIT), "run", "--from-job", name, *extra],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or server_env(),
        timeout=300,
    )


def test_replay_reproduces_the_failure(s3, bucket, tmp_path):
    create_job_on_aws(s3, bucket, "failed-on-aws", lr="5.0")
    done = run_from_job("failed-on-aws", tmp_path, "--local")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout[done.stdout.rindex("\n{") :])  # after the echoed log
    assert doc["TrainingJobStatus"] == "Failed"
    assert "ValueError" in doc["FailureReason"]
    assert "lr=5.0 diverges: loss is nan after 3 rows" in doc["FailureReason"]
    assert doc["TrainingJobName"].startswith("failed-on-aws-replay-")
    note = [line for line in done.stderr.splitlines() if "replaying failed-on-aws" in line]
    assert note and "TrainingJobStatus" in note[0] and "CreationTime" in note[0]


def test_replay_of_a_job_that_completes_lands_its_model(s3, bucket, tmp_path):
    create_job_on_aws(s3, bucket, "ok-on-aws", lr="0.1")
    done = run_from_job("ok-on-aws", tmp_path, "--local", "--job-name", "ok-again")  # as typed
    assert done.returncode == 0, done.stderr
    log, description = done.stdout.rsplit("\n{", 1)  # the job's log is echoed, then this
    assert "lr=0.1" in log
    doc = json.loads("{" + description)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert doc["TrainingJobName"] == "ok-again"
    uri = doc["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{bucket}/output/{doc['TrainingJobName']}/output/model.tar.gz"
    body = s3.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("model.txt").read() == b"lr=0.1 rows=3"
    # the original job is as it was
    original = boto3.client("sagemaker").describe_training_job(TrainingJobName="ok-on-aws")
    assert original["TrainingJobName"] == "ok-on-aws"


def test_replay_of_a_job_that_serve_recorded(bucket, tmp_path):
    """A job that ran through `sm-toolkit serve` replays from that endpoint's records."""
    with running_endpoint(tmp_path / "serve") as served:
        env = server_env(AWS_ENDPOINT_URL=served.url)
        client = boto3.client("sagemaker", endpoint_url=served.url)
        boto3.client("s3", endpoint_url=served.url).create_bucket(Bucket=bucket)
        request = training_request("served-fail", bucket, mode="fail")
        client.create_training_job(**request)
        with pytest.raises(WaiterError, match="Failed"):  # the waiter's word for a failed job
            client.get_waiter("training_job_completed_or_stopped").wait(
                TrainingJobName="served-fail", WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        done = run_from_job("served-fail", tmp_path, "--local", env=env)  # as typed
    assert done.returncode == 1, done.stderr
    log, description = done.stdout.rsplit("\n{", 1)  # the job's log is echoed, then this
    assert "ValueError: learning rate too spicy" in log
    doc = json.loads("{" + description)
    assert "learning rate too spicy" in doc["FailureReason"]


def test_a_job_that_does_not_exist_is_one_line(tmp_path):
    done = run_from_job("no-such-job", tmp_path, "--local")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sm-toolkit: error: --from-job: 'no-such-job'")
    assert "Traceback" not in done.stderr


def test_from_job_needs_local(tmp_path):
    done = run_from_job("any-job", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "sm-toolkit: error: --from-job: 'any-job' is not allowed; runs with --local (this machine)"
    )
