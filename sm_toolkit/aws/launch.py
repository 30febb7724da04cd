"""Submit a spec to SageMaker through the SDK, with the user's AWS settings.

Credentials, region and endpoints come from the standard AWS settings (environment,
profile, ``AWS_ENDPOINT_URL``), so pointing ``AWS_ENDPOINT_URL`` at a moto server on
127.0.0.1 launches against it. With a custom endpoint, SDK telemetry is opted out: its
host is a real AWS one, and a job aimed elsewhere should send nothing to AWS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from sm_toolkit.aws import generation
from sm_toolkit.aws.render import render, staged_inputs
from sm_toolkit.spec import JobSpec

ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER")


@dataclass(frozen=True)
class Launched:
    kind: str  # "training" or "tuning"
    name: str
    description: dict[str, Any]


def launch(
    spec: JobSpec, *, job_name: str | None = None, wait: bool = False, sdk: str | None = None
) -> Launched:
    """Check the request offline, upload local inputs, then create the job through the SDK
    generation ``sdk`` (default: the one installed). Under v3 the training job is named
    ``<name>-<timestamp>`` by the SDK; ``Launched.name`` is that name."""
    sdk = generation.resolve(sdk)
    name = job_name or (spec.tuning.job_name if spec.tuning else spec.name)
    render(spec, job_name=name, sdk=sdk)  # the same request, validated before anything is sent
    custom_endpoint = any(os.environ.get(v) for v in ENDPOINT_VARS)
    boto_session = boto3.Session(region_name=spec.region)
    inputs = _upload_local_inputs(spec, name, boto_session)
    if sdk == "v3":
        from sm_toolkit.aws import sdk_v3 as sdk_module
    else:
        from sm_toolkit.aws import sdk_v2 as sdk_module
    kind, created, desc = sdk_module.launch_job(
        spec, boto_session, inputs, name, wait=wait, opt_out_telemetry=custom_endpoint
    )
    return Launched(kind, created, desc)


def _upload_local_inputs(spec: JobSpec, job_name: str, boto_session) -> dict[str, str]:
    """Upload each local input where ``staged_inputs`` says (a folder's files keep their
    relative paths, a file its name); channel -> S3 URI."""
    targets = staged_inputs(spec, job_name)
    s3 = boto_session.client("s3")
    for channel, uri in spec.inputs.items():
        if uri.startswith("s3://"):
            continue
        bucket, _, prefix = targets[channel][len("s3://") :].partition("/")
        path = Path(uri)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            key = f"{prefix}/{f.relative_to(path) if path.is_dir() else f.name}"
            s3.upload_file(str(f), bucket, key)
    return targets
