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

from sm_toolkit.aws import sdk_v2
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


def unique_name(base: str, *, tuning: bool) -> str:
    """``base`` plus a timestamp, cut to the API's length, as the SDK's base_job_name does."""
    from sagemaker.utils import name_from_base

    if tuning:  # tuning job names: at most 32 characters, the SDK's short timestamp
        return name_from_base(base, max_length=32, short=True)
    return name_from_base(base)


def launch(
    spec: JobSpec,
    *,
    job_name: str | None = None,
    wait: bool = False,
    region: str | None = None,
    unique: bool = False,
) -> Launched:
    """Check the request offline, upload local inputs, then create the job.

    ``unique`` appends a timestamp to the name (a second launch of one spec would otherwise
    reuse the name, which AWS refuses)."""
    name = job_name or (spec.tuning.job_name if spec.tuning else spec.name)
    if unique:
        name = unique_name(name, tuning=spec.tuning is not None)
    region = resolve_region(spec, region)
    # The same request, validated before anything is sent.
    render(spec, job_name=name, job_name_field="--job-name" if job_name else _name_field(spec))
    custom_endpoint = any(os.environ.get(v) for v in ENDPOINT_VARS)
    session = sdk_v2.make_session(
        boto3.Session(region_name=region),
        bucket=spec.bucket,
        sagemaker_config=sdk_v2.user_sdk_config(custom_endpoint),
    )
    inputs = upload_local_inputs(spec, name, session.boto_session)
    estimator = sdk_v2.build_estimator(spec, session)
    client = session.sagemaker_client
    if spec.tuning is None:
        estimator.fit(
            inputs=sdk_v2.training_inputs(inputs),
            job_name=name,
            wait=wait,
            logs="All" if wait else "None",
        )
        desc = client.describe_training_job(TrainingJobName=name)
        return Launched("training", name, desc, region)
    tuner = sdk_v2.build_tuner(spec, estimator)
    tuner.fit(inputs=sdk_v2.training_inputs(inputs), job_name=name, wait=False)
    if wait:
        tuner.wait()
    desc = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    return Launched("tuning", name, desc, region)


def _name_field(spec: JobSpec) -> str:
    return "tuning.job_name" if spec.tuning is not None else "name"
