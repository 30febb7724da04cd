"""The AWS CLI against ``sm-toolkit serve``, typed as a user types it, with AWS_ENDPOINT_URL.

create-training-job --cli-input-json, describe-training-job, stop-training-job and
``wait training-job-completed-or-stopped``. The CLI's waiter polls every 120 s, so the tests
let the job end first (polling describe-training-job) and then check that ``wait`` returns
at once with success; a refused request prints the service's error and exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from endpoint_support import running_endpoint, training_request, wait_for, wait_for_script

pytestmark = pytest.mark.integration
AWS = shutil.which("aws") or str(Path(sys.executable).with_name("aws"))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_endpoint(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
def aws(endpoint, tmp_path, monkeypatch):
    """Run ``aws ARGS``; returns the completed process (JSON output by default)."""
    if not Path(AWS).exists():
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([AWS, *args], capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    run("s3", "mb", "s3://cli-bucket")
    return run


def describe(aws, name: str) -> dict:
    return json.loads(aws("sagemaker", "describe-training-job", "--training-job-name", name).stdout)


def create(aws, tmp_path: Path, request: dict, check: bool = True):
    path = tmp_path / f"{request['TrainingJobName'][:40]}.json"
    path.write_text(json.dumps(request))
    return aws(
        "sagemaker", "create-training-job", "--cli-input-json", f"file://{path}", check=check
    )


def test_create_describe_wait(aws, tmp_path):
    out = create(aws, tmp_path, training_request("cli-ok", "cli-bucket"))
    assert json.loads(out.stdout)["TrainingJobArn"].endswith(":training-job/cli-ok")
    doc = wait_for(
        lambda: (d := describe(aws, "cli-ok"))["TrainingJobStatus"] != "InProgress" and d,
        timeout=120,
        every=0.5,
    )
    assert doc["TrainingJobStatus"] == "Completed"
    waited = aws(
        "sagemaker", "wait", "training-job-completed-or-stopped", "--training-job-name", "cli-ok"
    )
    assert waited.returncode == 0
    # The log is where AWS keeps it (`aws logs tail` is CLI v2's; v1 has filter-log-events).
    events = json.loads(
        aws(
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/aws/sagemaker/TrainingJobs",
            "--log-stream-name-prefix",
            "cli-ok/",
        ).stdout
    )["events"]
    assert any("train:loss=" in e["message"] for e in events)
    assert {e["logStreamName"].rsplit("-", 1)[0] for e in events} == {"cli-ok/algo-1"}


def test_stop_then_wait(aws, tmp_path):
    create(aws, tmp_path, training_request("cli-stop", "cli-bucket", mode="sleep"))
    wait_for_script(boto3.client("logs", region_name="us-east-1"), "cli-stop")
    aws("sagemaker", "stop-training-job", "--training-job-name", "cli-stop")
    wait_for(lambda: describe(aws, "cli-stop")["TrainingJobStatus"] == "Stopped", timeout=60)
    aws("sagemaker", "wait", "training-job-completed-or-stopped", "--training-job-name", "cli-stop")


def test_refused_request_prints_the_service_error(aws, tmp_path):
    done = create(aws, tmp_path, training_request("c" * 64, "cli-bucket"), check=False)
    assert done.returncode != 0
    assert "ValidationException" in done.stderr and "'trainingJobName'" in done.stderr
    missing = aws(
        "sagemaker", "describe-training-job", "--training-job-name", "cli-none", check=False
    )
    assert missing.returncode != 0 and "ResourceNotFound" in missing.stderr
