"""Helpers for the endpoint tests: start ``sm-toolkit serve`` as a user does, build requests.

The endpoint runs as a subprocess on a free loopback port (``--port 0``; the server prints
the address it bound). Clients reach it through ``AWS_ENDPOINT_URL`` only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERSCRIPT = ROOT / "tests" / "fixtures" / "userscript"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
SM_TOOLKIT = Path(sys.executable).with_name("sm-toolkit")


@dataclass
class Served:
    """A running endpoint: its URL and everything it printed so far."""

    url: str
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


def server_env(**extra: str) -> dict[str, str]:
    """The test's environment, with this worktree's code first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def serve_command(workdir: Path | None, *args: str) -> list[str]:
    where = ["--workdir", str(workdir)] if workdir is not None else []
    return [str(SM_TOOLKIT), "serve", *where, *args]


@contextmanager
def running_endpoint(workdir: Path | None, *args: str, cwd: Path | None = None, port: str = "0"):
    """``sm-toolkit serve --port 0 [--workdir DIR] ARGS``; SIGTERM and wait at the end."""
    cmd = serve_command(workdir, *(["--port", port] if port else []), *args)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=server_env(), cwd=cwd
    )
    served = Served(url="", proc=proc)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        served.output.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            served.url = match.group(1)
            break
        if time.monotonic() > deadline:
            break
    if not served.url:
        proc.kill()
        raise RuntimeError("sm-toolkit serve did not start:\n" + served.text())
    reader = threading.Thread(target=lambda: served.output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)


def training_request(name: str, bucket: str, *, mode: str = "ok", epochs: int = 2, **extra) -> dict:
    """A CreateTrainingJob request for the user script, as the SDK's local mode sends it."""
    request = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "sm-toolkit:latest",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"train:loss=([0-9.]+)"}],
        },
        "HyperParameters": {
            "mode": f'"{mode}"',
            "epochs": str(epochs),
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"file://{USERSCRIPT}"',
        },
        # The script lists its channels first: the tests know it runs when that shows.
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"file://{USERSCRIPT}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(extra)
    return request


def log_lines(logs, job: str) -> list[str]:
    """Every line of a job's CloudWatch log streams, as a client reads them."""
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=job + "/")
    lines = []
    for stream in streams["logStreams"]:
        events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"])[
            "events"
        ]
        lines += [e["message"] for e in events]
    return lines


def wait_for_script(logs, job: str, timeout: float = 120.0) -> None:
    """Until the user script itself has printed (its channel listing): stopping it earlier
    would stop the launcher, not the script."""
    wait_for(
        lambda: any(line.startswith("channel train:") for line in log_lines(logs, job)),
        timeout=timeout,
        every=0.5,
    )


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2):
    """Poll until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")
