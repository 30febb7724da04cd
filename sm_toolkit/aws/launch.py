"""Submit a spec to SageMaker through the SDK, with the user's AWS settings.

Credentials, region and endpoints come from the standard AWS settings (environment,
profile, ``AWS_ENDPOINT_URL``), so pointing ``AWS_ENDPOINT_URL`` at a moto server on
127.0.0.1 launches against it. With a custom endpoint, SDK telemetry is opted out: its
host is a real AWS one, and a job aimed elsewhere should send nothing to AWS.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import boto3

from sm_toolkit.aws import generation
from sm_toolkit.aws.names import unique_name
from sm_toolkit.aws.render import render, upload_local_inputs
from sm_toolkit.errors import MISSING, ConfigError
from sm_toolkit.spec import JobSpec
from sm_toolkit.spec.job import REGION_PATTERN

ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER")


@dataclass(frozen=True)
class Launched:
    kind: str  # "training" or "tuning"
    name: str
    description: dict[str, Any]
    region: str = ""


def resolve_region(spec: JobSpec, region: str | None = None) -> str:
    """The region a launch uses: the argument, else a ``region:`` written in the spec, else
    the standard AWS chain (AWS_REGION / AWS_DEFAULT_REGION, then the profile)."""
    explicit = spec.region if "region" in spec.model_fields_set else None
    found = region or explicit or boto3.Session().region_name
    if not found:
        raise ConfigError(
            "region", MISSING, "give --region, set AWS_DEFAULT_REGION or a profile's region"
        )
    if not re.fullmatch(REGION_PATTERN, found):
        raise ConfigError("region", found, "an AWS region like us-east-1")
    return found


def launch(
    spec: JobSpec,
    *,
    job_name: str | None = None,
    wait: bool = False,
    region: str | None = None,
    unique: bool = False,
    sdk: str | None = None,
) -> Launched:
    """Check the request offline, upload local inputs, then create the job.

    ``unique`` appends a timestamp to the name (a second launch of one spec would otherwise
    reuse the name, which AWS refuses). ``sdk`` picks the generation (default: the one
    installed); under v3 the SDK names the training job ``<name>-<timestamp>`` itself."""
    sdk = generation.resolve(sdk)
    name = job_name or (spec.tuning.job_name if spec.tuning else spec.name)
    if unique:
        name = unique_name(name, tuning=spec.tuning is not None)
    region = resolve_region(spec, region)
    # The same request, validated before anything is sent.
    render(
        spec,
        job_name=name,
        job_name_field="--job-name" if job_name else _name_field(spec),
        sdk=sdk,
    )
    custom_endpoint = any(os.environ.get(v) for v in ENDPOINT_VARS)
    boto_session = boto3.Session(region_name=region)
    inputs = upload_local_inputs(spec, name, boto_session)
    if sdk == "v3":
        from sm_toolkit.aws import sdk_v3 as sdk_module
    else:
        from sm_toolkit.aws import sdk_v2 as sdk_module
    kind, created, desc = sdk_module.launch_job(
        spec, boto_session, inputs, name, wait=wait, opt_out_telemetry=custom_endpoint
    )
    return Launched(kind, created, desc, region)


def _name_field(spec: JobSpec) -> str:
    return "tuning.job_name" if spec.tuning is not None else "name"
