"""The endpoint's records outlive it: stopping ``sm-toolkit serve`` stops its running jobs as
StopTrainingJob does, and a server started again on the same workdir lists and describes
the old jobs."""

from __future__ import annotations

import socket

import boto3
import pytest
from endpoint_support import running_endpoint, training_request, wait_for_script

pytestmark = pytest.mark.integration


def client(url: str, service: str = "sagemaker"):
    return boto3.client(service, region_name="us-east-1", endpoint_url=url)


def test_restart_lists_old_jobs_and_shutdown_stops_running_ones(tmp_path):
    workdir = tmp_path / "wd"
    with running_endpoint(workdir) as first:
        sm = client(first.url)
        client(first.url, "s3").create_bucket(Bucket="keep-bucket")
        sm.create_training_job(**training_request("kept-done", "keep-bucket"))
        sm.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName="kept-done", WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        done_before = sm.describe_training_job(TrainingJobName="kept-done")
        sm.create_training_job(**training_request("kept-running", "keep-bucket", mode="sleep"))
        wait_for_script(client(first.url, "logs"), "kept-running")
    assert first.proc.returncode == 0, first.text()
    assert "stopping running jobs" in first.text()

    with running_endpoint(workdir) as second:
        sm = client(second.url)
        names = [s["TrainingJobName"] for s in sm.list_training_jobs()["TrainingJobSummaries"]]
        assert names == ["kept-done", "kept-running"]
        assert sm.describe_training_job(TrainingJobName="kept-done") | {
            "ResponseMetadata": None
        } == done_before | {"ResponseMetadata": None}
        stopped = sm.describe_training_job(TrainingJobName="kept-running")
        assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "Stopped")
        with pytest.raises(sm.exceptions.ResourceInUse):  # names stay taken, as on AWS
            sm.create_training_job(**training_request("kept-done", "keep-bucket"))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_with_defaults_as_typed(tmp_path):
    """``sm-toolkit serve`` with no option: port 8777, workdir ./.sm-toolkit."""
    if not _port_free(8777):
        pytest.skip("port 8777 is in use on this machine")
    with running_endpoint(None, cwd=tmp_path, port="") as served:
        assert served.url == "http://127.0.0.1:8777"
        assert client(served.url).list_training_jobs()["TrainingJobSummaries"] == []
    assert (tmp_path / ".sm-toolkit" / "endpoint.sqlite").is_file()
