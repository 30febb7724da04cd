"""Shared test setup: no test may reach AWS.

Every AWS client in the test run points at one moto server bound to 127.0.0.1, with fake
credentials, and the SageMaker SDK's telemetry is opted out through its own config file.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# The Ctrl-C tests send SIGINT to the processes they start, as a terminal does. A test run
# started in the background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT
# *ignored*, and so would every process it starts, which then never sees the Ctrl-C.
# A handler (unlike an ignore) is reset to the default on exec, so children start as a
# terminal user's do.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _isolate_from_aws(tmp: Path) -> None:
    config = tmp / "sagemaker-config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n"
    )
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow 3's usage reports leave the machine
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


@pytest.fixture(scope="session", autouse=True)
def moto_endpoint(tmp_path_factory):
    """One moto server on 127.0.0.1 for the whole run; AWS_ENDPOINT_URL points at it."""
    from moto.server import ThreadedMotoServer

    _isolate_from_aws(tmp_path_factory.mktemp("aws"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()


@pytest.fixture
def s3(moto_endpoint):
    import boto3

    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket per test (moto keeps state for the whole server)."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-")[:40].strip("-]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    s3.create_bucket(Bucket=name)
    return name
