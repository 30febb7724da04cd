"""Render the exact CreateTrainingJob / CreateHyperParameterTuningJob request, offline.

The request comes from the SDK's own request building: under SDK v2 the estimator (or
tuner) runs its normal ``fit`` against a session whose create call is intercepted (the
hook the SDK's PipelineSession uses); under v3 the ModelTrainer (or tuner) runs its normal
``train`` (``tune``) and the create call is stopped at botocore (``sdk_v3``). S3 uploads
are answered locally. Nothing leaves the machine: no credentials, account or network are
needed. The captured request is then
validated against botocore's service model, as boto3 would before sending it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

from sm_toolkit.aws import generation, limits
from sm_toolkit.errors import ConfigError, ToolkitError
from sm_toolkit.spec import JobSpec

OPERATIONS = {"train": "CreateTrainingJob", "create_tuning_job": "CreateHyperParameterTuningJob"}


@dataclass
class Rendered:
    operation: str
    request: dict[str, Any]
    uploads: list[str] = field(default_factory=list)  # S3 URIs the launch would upload


@cache
def _shared_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def offline_boto_session(region: str, uploads: list[str]) -> boto3.Session:
    """A boto3 session that answers S3 calls locally, IAM with AccessDenied (SDK v3 then
    proceeds without verifying the role) and refuses every other call."""
    core = botocore.session.Session()
    # One loader for every render: each SageMaker Session makes ~7 clients, and parsing
    # their service models again each time is most of a render's time.
    core.register_component("data_loader", _shared_loader())
    session = boto3.Session(
        aws_access_key_id="offline",
        aws_secret_access_key="offline",
        region_name=region,
        botocore_session=core,
    )

    def record(params, model, **_):
        if model.name == "PutObject":
            uploads.append(f"s3://{params['Bucket']}/{params['Key']}")

    def answer(model, **_):
        if model.service_model.service_name == "iam":  # SDK v3 checks the role: unknown offline
            denied = {"Error": {"Code": "AccessDenied", "Message": "render is offline"}}
            return AWSResponse("https://offline.invalid", 403, {}, None), denied
        if model.service_model.service_name != "s3":
            raise ToolkitError(f"render made an unexpected {model.name} call; it must stay offline")
        ok = {"ResponseMetadata": {"HTTPStatusCode": 200}, "ETag": '"offline"'}
        if model.name == "ListBuckets":  # SDK v3 looks for the bucket, then heads it
            ok["Buckets"] = []
        return AWSResponse("https://offline.invalid", 200, {}, None), ok

    session.events.register("before-parameter-build.s3.*", record)
    session.events.register("before-call.*.*", answer)
    return session


def render(
    spec: JobSpec,
    *,
    job_name: str | None = None,
    boto_session: boto3.Session | None = None,
    job_name_field: str = "--job-name",
    sdk: str | None = None,
) -> Rendered:
    """The request a launch of this spec sends, validated against botocore's model and the
    model's limits. The user's SageMaker SDK config defaults apply, as they do to launch.
    ``sdk``: ``v2`` or ``v3`` (default: the generation installed).

    Offline by default; with ``boto_session`` (a real one) the code upload goes through it
    to S3, so the request is runnable as printed. Any other AWS call is refused.
    """
    uploads: list[str] = []
    if boto_session is None:
        boto_session = offline_boto_session(spec.region, uploads)
    else:
        _refuse_all_but_s3(boto_session, uploads)
    if generation.resolve(sdk) == "v3":
        from sm_toolkit.aws import sdk_v3

        rendered = sdk_v3.render(spec, boto_session, uploads, job_name)
        limits.check(rendered.operation, rendered.request, job_name_field=None)
        return rendered
    from sm_toolkit.aws import sdk_v2

    session = sdk_v2.make_session(
        boto_session,
        bucket=spec.bucket,
        sagemaker_config=sdk_v2.user_sdk_config(opt_out_telemetry=True),
        session_class=sdk_v2.CaptureSession,
    )
    session.captured = []
    try:
        _fit(spec, session, job_name)
    except OSError as exc:  # source_dir unreadable (a dangling link, a permission)
        where = exc.filename or spec.source_dir
        raise ConfigError("source_dir", str(where), f"readable files ({exc.strerror})") from None
    assert len(session.captured) == 1, session.captured
    func_name, request = session.captured[0]
    operation = OPERATIONS[func_name]
    validate(session, operation, request)
    limits.check(operation, request, job_name_field=job_name_field if job_name else None)
    local = [
        uri
        for ch, uri in staged_inputs(spec, job_name or _name(spec)).items()
        if uri != spec.inputs[ch]
    ]
    return Rendered(operation, request, uploads + local)


def _fit(spec: JobSpec, session: Any, job_name: str | None) -> None:
    from sm_toolkit.aws import sdk_v2

    estimator = sdk_v2.build_estimator(spec, session)
    inputs = sdk_v2.training_inputs(staged_inputs(spec, job_name or _name(spec)))
    if spec.tuning is None:
        estimator.fit(inputs=inputs, job_name=job_name or spec.name, wait=False, logs=False)
    else:
        tuner = sdk_v2.build_tuner(spec, estimator)
        tuner.fit(inputs=inputs, job_name=job_name or spec.tuning.job_name, wait=False)


def _refuse_all_but_s3(session: boto3.Session, uploads: list[str]) -> None:
    def record(params, model, **_):
        if model.name == "PutObject" or model.name == "CreateMultipartUpload":
            uploads.append(f"s3://{params['Bucket']}/{params['Key']}")

    def refuse(model, **_):
        if model.service_model.service_name == "iam":  # SDK v3's role check: not verified
            denied = {"Error": {"Code": "AccessDenied", "Message": "render does not call IAM"}}
            return AWSResponse("https://offline.invalid", 403, {}, None), denied
        if model.service_model.service_name != "s3":
            raise ToolkitError(f"render made an unexpected {model.name} call")

    session.events.register("before-parameter-build.s3.*", record)
    session.events.register("before-call.*.*", refuse)


def _name(spec: JobSpec) -> str:
    return spec.tuning.job_name if spec.tuning is not None else spec.name


def staged_inputs(spec: JobSpec, job_name: str) -> dict[str, str]:
    """Channel -> S3 URI, local paths replaced by where launch uploads them."""
    base = spec.output_path.rstrip("/")
    return {
        ch: uri if uri.startswith("s3://") else f"{base}/{job_name}/input/{ch}"
        for ch, uri in spec.inputs.items()
    }


def upload_local_inputs(
    spec: JobSpec, job_name: str, boto_session: boto3.Session
) -> dict[str, str]:
    """Upload each local input where ``staged_inputs`` says (a folder's files keep their
    relative paths, a file its name); channel -> S3 URI. Plain boto3: either SDK generation."""
    from pathlib import Path

    targets = staged_inputs(spec, job_name)
    s3 = boto_session.client("s3")
    for channel, uri in spec.inputs.items():
        if uri.startswith("s3://"):
            continue
        bucket, _, prefix = targets[channel][len("s3://") :].partition("/")
        path = Path(uri)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            key = f"{prefix}/{f.relative_to(path).as_posix() if path.is_dir() else f.name}"
            s3.upload_file(str(f), bucket, key)
    return targets


def validate(session: Any, operation: str, request: dict[str, Any]) -> None:
    """Raise ToolkitError if botocore's service model rejects the request."""
    model = session.sagemaker_client.meta.service_model.operation_model(operation)
    report = ParamValidator().validate(request, model.input_shape)
    if report.has_errors():
        raise ToolkitError(f"{operation} request rejected by botocore: {report.generate_report()}")
