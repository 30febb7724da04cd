"""Capture the CreateTrainingJob request SageMaker SDK v3 sends for a user's script.

Run with the v3 virtualenv's python (``make venv-v3``), against a moto server::

    .venv-v3/bin/python tests/v3/capture_request.py --endpoint http://127.0.0.1:PORT \
        --bucket my-bucket --source-dir DIR --entry-script train.py --instance-count 2 \
        [--torchrun | --mpi] [--process-count-per-node N] [--hyperparameter KEY=VALUE ...] \
        [--input CHANNEL=s3://bucket/prefix ...] --out request.json

It builds a real ``sagemaker.train.ModelTrainer``, lets v3 upload its ``code`` and
``sm_drivers`` channels into the moto S3 bucket (created if missing), and stops the
CreateTrainingJob call after botocore has validated it and before it is sent, so nothing
is created. The request is written as JSON (boto3's parameter names). Role validation by
IAM SimulatePrincipalPolicy (which moto lacks) is switched off with
SAGEMAKER_VALIDATE_ROLE=false; the role is created in moto because v3 still calls GetRole.
Nothing is sent anywhere but ``--endpoint``; STS is never called.

Self-contained on purpose (boto3 and sagemaker>=3 only), so engine tests in another
environment can run it as a subprocess.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
DEFAULT_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-toolkit:latest"
# The role's trust policy: what SageMaker would assume (moto only stores it).
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class Captured(Exception):
    """Raised from botocore's before-call hook: the validated request, not sent."""

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__("CreateTrainingJob captured")
        self.request = request


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True, help="moto server, http://127.0.0.1:PORT")
    p.add_argument("--bucket", required=True, help="S3 bucket for v3's code and sm_drivers")
    p.add_argument("--source-dir", required=True, type=Path)
    p.add_argument("--entry-script", required=True)
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--instance-type", default="ml.c5.xlarge")
    launcher = p.add_mutually_exclusive_group()
    launcher.add_argument("--torchrun", action="store_true", help="distributed=Torchrun()")
    launcher.add_argument("--mpi", action="store_true", help="distributed=MPI()")
    p.add_argument("--process-count-per-node", type=int, help="processes per host")
    p.add_argument("--hyperparameter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--input", action="append", default=[], metavar="CHANNEL=S3URI")
    p.add_argument("--job-name", default="v3-capture", help="ModelTrainer base_job_name")
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--role", default=DEFAULT_ROLE)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--out", required=True, type=Path)
    return p


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag}: {value!r} is not KEY=VALUE")
        out[key] = rest
    return out


def _point_at(endpoint: str) -> None:
    # Every client the SDK makes honours AWS_ENDPOINT_URL; fake credentials unless given.
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"


def _prepare_moto(boto_session, bucket: str, role_arn: str, region: str) -> None:
    s3 = boto_session.client("s3")
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    iam = boto_session.client("iam")
    name = role_arn.rsplit("/", 1)[-1]
    try:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass


def _install_capture(boto_session) -> None:
    seen: dict[str, Any] = {}

    def record(params, **_):
        seen["request"] = copy.deepcopy(params)

    def stop(**_):
        # before-call comes after botocore's parameter validation: the request is valid
        # for the service model, and raising here keeps it from being sent.
        raise Captured(seen["request"])

    events = boto_session.events
    events.register("before-parameter-build.sagemaker.CreateTrainingJob", record)
    events.register("before-call.sagemaker.CreateTrainingJob", stop)


def capture(args: argparse.Namespace) -> dict[str, Any]:
    """Build the ModelTrainer for the arguments and return its CreateTrainingJob request."""
    hyperparameters = _pairs(args.hyperparameter, "--hyperparameter")  # before the slow imports
    channels = _pairs(args.input, "--input")
    _point_at(args.endpoint)
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData, OutputDataConfig, SourceCode
    from sagemaker.train.distributed import MPI, Torchrun

    boto_session = boto3.Session(region_name=args.region)
    _prepare_moto(boto_session, args.bucket, args.role, args.region)
    _install_capture(boto_session)
    telemetry_off = {
        "SchemaVersion": "1.0",
        "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
    }
    session = Session(
        boto_session=boto_session, default_bucket=args.bucket, sagemaker_config=telemetry_off
    )
    distributed = None
    if args.torchrun:
        distributed = Torchrun(process_count_per_node=args.process_count_per_node)
    elif args.mpi:
        distributed = MPI(process_count_per_node=args.process_count_per_node)
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=args.role,
        base_job_name=args.job_name,
        training_image=args.image,
        source_code=SourceCode(
            source_dir=str(args.source_dir.resolve()), entry_script=args.entry_script
        ),
        compute=Compute(instance_type=args.instance_type, instance_count=args.instance_count),
        distributed=distributed,
        hyperparameters=hyperparameters,
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{args.bucket}/output"),
    )
    inputs = [InputData(channel_name=name, data_source=uri) for name, uri in channels.items()]
    try:
        trainer.train(input_data_config=inputs or None, wait=False, logs=False)
    except Captured as done:
        return done.request
    raise RuntimeError("ModelTrainer.train returned without calling CreateTrainingJob")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    request = capture(args)
    args.out.write_text(json.dumps(request, indent=2, sort_keys=True, default=str) + "\n")
    print(f"{args.out}: CreateTrainingJob {request['TrainingJobName']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
