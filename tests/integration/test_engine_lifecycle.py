"""The local engine from hand-written CreateTrainingJob requests (not made by sm-toolkit), as
a user who already has SageMaker jobs writes them: lifecycle, limits, paths, environment,
and the DescribeTrainingJob documents checked against botocore's output shape."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest
from local_helpers import assert_valid_describe

from sm_toolkit.local.engine import TrainingJob, run_training_job

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_DIR = ROOT / "tests" / "fixtures" / "lifecycle"
ROLE = "arn:aws:iam::123456789012:role/SageMakerTrainingRole"
pytestmark = pytest.mark.integration


def upload_code(s3, bucket: str) -> str:
    """The script as sourcedir.tar.gz in S3, as a launch on AWS stages it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(SCRIPT_DIR / "train.py", arcname="train.py")
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=buf.getvalue())
    return f"s3://{bucket}/code/sourcedir.tar.gz"


def request(name: str, bucket: str, code: str, mode: str = "sleep", **extra) -> dict:
    req = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "sm-toolkit:latest",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "progress", "Regex": "progress=([0-9]+)"}],
        },
        "RoleArn": ROLE,
        "HyperParameters": {
            "mode": json.dumps(mode),
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(code),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    for key, value in extra.items():
        req[key] = {**req[key], **value} if isinstance(value, dict) and key in req else value
    return req


@pytest.fixture
def code(s3, bucket):
    return upload_code(s3, bucket)


def test_completed_job_from_a_hand_written_request(s3, bucket, code, tmp_path):
    req = request("hand-ok", bucket, code, "env")
    doc = run_training_job(req, workdir=tmp_path)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert_valid_describe(doc)
    assert [t["Status"] for t in doc["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert [(m["MetricName"], m["Value"]) for m in doc["FinalMetricDataList"]] == [
        ("progress", 1.0)
    ]
    key = "output/hand-ok/output/model.tar.gz"
    assert doc["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/{key}"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_the_job_sees_no_laptop_credentials_or_variables(bucket, code, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_LAPTOP_SECRET", "do-not-leak")
    lines: list[str] = []
    doc = run_training_job(
        request("hand-env", bucket, code, "env"), workdir=tmp_path, on_line=lines.append
    )
    assert doc["TrainingJobStatus"] == "Completed"
    seen = json.loads(next(line for line in lines if line.startswith("ENV "))[4:])
    for leaked in ("MY_LAPTOP_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert leaked not in seen
    for expected in ("SM_MODEL_DIR", "SM_CHANNELS", "TRAINING_JOB_NAME", "AWS_ENDPOINT_URL"):
        assert expected in seen


def test_max_runtime_ends_the_job_as_sagemaker_does(bucket, code, tmp_path):
    req = request(
        "hand-maxrun", bucket, code, "sleep", StoppingCondition={"MaxRuntimeInSeconds": 6}
    )
    began = time.monotonic()
    doc = run_training_job(req, workdir=tmp_path)
    assert time.monotonic() - began < 40  # the script would sleep 600 s
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert_valid_describe(doc)
    # SIGTERM reached the script, which saved before the end; the model was uploaded
    assert doc["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz")


def test_stop_sends_sigterm_and_uploads_what_the_script_saved(s3, bucket, code, tmp_path):
    job = TrainingJob(request("hand-stop", bucket, code, "sleep"), workdir=tmp_path).start()
    deadline = time.monotonic() + 120
    while not job.metric_series:  # the script has started and printed its first metric
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stopped_at = time.monotonic()
    job.stop()
    doc = job.wait(60)
    assert time.monotonic() - stopped_at < 20
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert_valid_describe(doc)
    body = s3.get_object(Bucket=bucket, Key="output/hand-stop/output/model.tar.gz")["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        assert tar.extractfile("stopped.txt").read() == b"saved on SIGTERM"


def test_a_failing_host_ends_a_hung_one_and_its_own_reason_is_the_job_reason(
    bucket, code, tmp_path
):
    req = request("hand-2hosts", bucket, code, "fail_one", ResourceConfig={"InstanceCount": 2})
    began = time.monotonic()
    doc = run_training_job(req, workdir=tmp_path)
    assert time.monotonic() - began < 60  # host 1 would sleep 600 s
    assert doc["TrainingJobStatus"] == "Failed"
    assert "ran out of patience" in doc["FailureReason"]
    assert len(doc["FailureReason"]) <= 1024
    assert_valid_describe(doc)


def test_a_daemon_child_does_not_hold_the_job_open_and_is_ended(bucket, code, tmp_path):
    began = time.monotonic()
    doc = run_training_job(request("hand-daemon", bucket, code, "daemon"), workdir=tmp_path)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert time.monotonic() - began < 60  # the daemon would hold the output 600 s
    pid_file = next((tmp_path / "jobs" / "hand-daemon").rglob("daemon.pid"))
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
        assert time.monotonic() < deadline, "the daemon outlived its job"
        time.sleep(0.2)


def test_s3_keys_that_escape_the_channel_fail_the_job_and_write_nothing(s3, bucket, code, tmp_path):
    s3.put_object(Bucket=bucket, Key="data/evil/ok.csv", Body=b"1")
    s3.put_object(Bucket=bucket, Key="data/evil/../../../../escaped.txt", Body=b"x")
    channel = {
        "ChannelName": "train",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/evil/"}
        },
    }
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="data/evil/")["Contents"]]
    assert any(".." in k for k in listed), "moto keeps the key as given"
    req = request("hand-escape", bucket, code, "env", InputDataConfig=[channel])
    doc = run_training_job(req, workdir=tmp_path / "work")
    assert doc["TrainingJobStatus"] == "Failed"
    assert "would be written outside" in doc["FailureReason"]
    assert "escaped.txt" in doc["FailureReason"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_job_name_in_use_is_refused_in_one_line(bucket, code, tmp_path):
    from sm_toolkit.errors import ConfigError

    first = TrainingJob(request("hand-dup", bucket, code, "sleep"), workdir=tmp_path).start()
    with pytest.raises(ConfigError, match="a job of that name exists"):
        TrainingJob(request("hand-dup", bucket, code, "sleep"), workdir=tmp_path).start()
    first.stop()
    assert first.wait(60)["TrainingJobStatus"] == "Stopped"


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sm_toolkit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_cli_runs_a_request_file_and_ctrl_c_stops_the_job_like_stop_training_job(
    bucket, code, tmp_path
):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("hand-cli", bucket, code, "sleep")))
    proc = cli("run", "--local", "--request", str(path), "--workdir", str(tmp_path / "w"))
    seen = []
    for line in proc.stdout:  # as a user watches it: the log is echoed (no --quiet)
        seen.append(line)
        if line.strip() == "started":
            break
    proc.send_signal(2)  # Ctrl-C
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    doc = json.loads(out[out.rindex('{\n  "TrainingJobName"') :])
    assert (doc["TrainingJobStatus"], doc["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert "stopping the job" in err
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("hand-cli" in c or str(tmp_path) in c for c in (p.info["cmdline"] or []))
    ]
    assert not left, f"processes left behind: {left}"


def test_cli_quiet_leaves_out_the_log_and_prints_the_description_alone(bucket, code, tmp_path):
    """`run --quiet`: the same job as typed echoes its log (the script's `ENV ` line) before
    the description; with --quiet stdout is the description and nothing else."""
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("hand-quiet", bucket, code, "env")))
    outs = {}
    for flags in ((), ("--quiet",)):
        proc = cli("run", "--local", "--request", str(path), "--workdir", str(tmp_path / "w"),
                   "--job-name", f"hand-quiet{len(flags)}", *flags)  # fmt: skip
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs[flags] = out
    echoed, quiet = outs[()], outs[("--quiet",)]
    assert any(line.startswith("ENV ") for line in echoed.splitlines())
    doc = json.loads(quiet)  # the whole of stdout
    assert doc["TrainingJobStatus"] == "Completed" and doc["TrainingJobName"] == "hand-quiet1"


@pytest.mark.parametrize("name", ["/tmp/some-dir", "../../x", "bad_name!"])
def test_cli_refuses_a_job_name_that_is_a_path(bucket, code, tmp_path, name):
    victim = tmp_path / "keep"
    victim.mkdir()
    (victim / "file.txt").write_text("precious")
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("hand-name", bucket, code, "env")))
    proc = cli(
        "run",
        "--local",
        "--request",
        str(path),
        "--job-name",
        name,
        "--workdir",
        str(tmp_path / "w"),
        cwd=victim,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "--job-name" in err
    assert (victim / "file.txt").read_text() == "precious"


def test_checkpoint_path_outside_opt_ml_is_a_container_path_under_the_host(
    s3, bucket, code, tmp_path
):
    req = request(
        "hand-ckpt",
        bucket,
        code,
        "env",
        CheckpointConfig={"S3Uri": f"s3://{bucket}/ckpt/hand", "LocalPath": "/checkpoints"},
        Environment={"SM_CHECKPOINT_DIR": "/checkpoints"},
    )
    s3.put_object(Bucket=bucket, Key="ckpt/hand/old.txt", Body=b"restored")
    doc = run_training_job(req, workdir=tmp_path)
    assert doc["TrainingJobStatus"] == "Completed", doc.get("FailureReason")
    assert not Path("/checkpoints/old.txt").exists()
    restored = tmp_path / "jobs/hand-ckpt/attempt-0/algo-1/checkpoints/old.txt"
    assert restored.read_bytes() == b"restored"
    assert os.environ.get("SM_CHECKPOINT_DIR") is None
