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

from sm_toolkit.aws import sdk_v2
from sm_toolkit.aws.render import render, staged_inputs
from sm_toolkit.spec import JobSpec

ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER")


@dataclass(frozen=True)
class Launched:
    kind: str  # "training" or "tuning"
    name: str
    description: dict[str, Any]


def launch(spec: JobSpec, *, job_name: str | None = None, wait: bool = False) -> Launched:
    """Check the request offline, upload local inputs, then create the job."""
    name = job_name or (spec.tuning.job_name if spec.tuning else spec.name)
    render(spec, job_name=name)  # the same request, validated before anything is sent
    custom_endpoint = any(os.environ.get(v) for v in ENDPOINT_VARS)
    session = sdk_v2.make_session(
        boto3.Session(region_name=spec.region),
        bucket=spec.bucket,
        sagemaker_config=sdk_v2.user_sdk_config(custom_endpoint),
    )
    inputs = _upload_local_inputs(spec, name, session)
    estimator = sdk_v2.build_estimator(spec, session)
    client = session.sagemaker_client
    if spec.tuning is None:
        estimator.fit(
            inputs=sdk_v2.training_inputs(inputs),
            job_name=name,
            wait=wait,
            logs="All" if wait else "None",
        )
        return Launched("training", name, client.describe_training_job(TrainingJobName=name))
    tuner = sdk_v2.build_tuner(spec, estimator)
    tuner.fit(inputs=sdk_v2.training_inputs(inputs), job_name=name, wait=False)
    if wait:
        tuner.wait()
    desc = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    return Launched("tuning", name, desc)


def _upload_local_inputs(spec: JobSpec, job_name: str, session) -> dict[str, str]:
    targets = staged_inputs(spec, job_name)
    for channel, uri in spec.inputs.items():
        if uri.startswith("s3://"):
            continue
        bucket, _, prefix = targets[channel][len("s3://") :].partition("/")
        path = Path(uri)
        session.upload_data(str(path), bucket=bucket, key_prefix=prefix)
    return targets
