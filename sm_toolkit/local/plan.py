"""A local job plan, built from the CreateTrainingJob request alone (pure).

The request is the contract: the same dict that boto3's ``create_training_job`` and
``aws sagemaker create-training-job --cli-input-json`` take, whoever wrote it (sm-toolkit's
render, SDK v2, SDK v3, a person, or DescribeTrainingJob of a job that ran on AWS). A field
the engine cannot honour is refused with one line naming it; one it honours only in part
is accepted with a note.

Local code and data follow SageMaker local mode: ``sagemaker_submit_directory`` may be
``file:///dir`` and a channel's S3Uri may be ``file:///path``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError


@dataclass(frozen=True)
class Channel:
    name: str
    uri: str  # s3://bucket/prefix, or file:///path (local mode)
    data_type: str = "S3Prefix"  # S3Prefix | ManifestFile
    distribution: str = "FullyReplicated"  # FullyReplicated | ShardedByS3Key
    content_type: str | None = None
    compression: str | None = None


@dataclass(frozen=True)
class Launch:
    """How a host starts: sagemaker-training's ``train`` (SDK v2 script mode, tuning trials)
    or the request's ContainerEntrypoint + ContainerArguments (SDK v3's ModelTrainer)."""

    entrypoint: tuple[str, ...] = ()  # empty: the image's default, ``train``

    @property
    def is_train(self) -> bool:
        return not self.entrypoint


@dataclass(frozen=True)
class JobPlan:
    name: str
    arn: str
    region: str
    image: str
    launch: Launch
    hyperparameters: dict[str, str]
    environment: dict[str, str]
    instance_type: str
    instance_count: int
    volume_gb: int
    keep_alive_seconds: int
    channels: tuple[Channel, ...]
    output_s3: str
    checkpoint_s3: str | None
    checkpoint_path: str
    max_runtime_seconds: int
    max_wait_seconds: int | None
    spot: bool
    retry_attempts: int
    metric_definitions: tuple[tuple[str, str], ...]
    rules: tuple[str, ...]
    tensorboard_s3: str | None
    tensorboard_path: str | None
    pool_key: dict[str, Any]
    request: dict[str, Any] = field(repr=False, default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def code_uri(self) -> str | None:
        """Where the v2 script-mode code comes from (s3://...tar.gz or file:///dir)."""
        raw = self.hyperparameters.get(contract.HP_SUBMIT_DIRECTORY)
        return None if raw is None else _decode(raw)

    @property
    def distribution(self) -> str:
        for key, name in (
            (contract.HP_SMDDP, "smddp"),
            (contract.HP_PYTORCH_DDP, "pytorchddp"),
            (contract.HP_MPI, "mpi"),
            (contract.HP_TORCH_DISTRIBUTED, "torch_distributed"),
        ):
            if _decode(self.hyperparameters.get(key, "false")) is True:
                return name
        return "none"


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


@cache
def _job_name_rule() -> tuple[int, int, re.Pattern]:
    """TrainingJobName's length bounds and pattern, from the service model."""
    meta = contract.service_model().shape_for("TrainingJobName").metadata
    return meta["min"], meta["max"], re.compile(meta["pattern"])


def _job_name_ok(name: str) -> bool:
    shortest, longest, pattern = _job_name_rule()
    return shortest <= len(name) <= longest and bool(pattern.fullmatch(name))


def validate_shape(request: dict[str, Any], operation: str = "CreateTrainingJob") -> None:
    """botocore's own check of a request (required members, types, minimums)."""
    from botocore.validate import ParamValidator

    shape = contract.service_model().operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        first = report.generate_report().splitlines()[0]
        raise ConfigError(operation, "request", f"botocore rejects it: {first[:240]}")


def plan_from_request(request: dict[str, Any], *, region: str = "us-east-1") -> JobPlan:
    """The plan of one CreateTrainingJob request; ConfigError names what cannot run here.
    ``region`` is used unless the request names its own (the SDK's sagemaker_region)."""
    validate_shape(request)
    region = _decode((request.get("HyperParameters") or {}).get(contract.HP_REGION, "")) or region
    name = request["TrainingJobName"]
    if not _job_name_ok(name):
        raise ConfigError("TrainingJobName", name, "1-63 letters, digits and hyphens")
    algo = request["AlgorithmSpecification"]
    notes = list(_refusals(request))
    resources = request["ResourceConfig"]
    stopping = request["StoppingCondition"]
    checkpoint = request.get("CheckpointConfig") or {}
    tensorboard = request.get("TensorBoardOutputConfig") or {}
    image = algo.get("TrainingImage") or ""
    if not image:
        raise ConfigError("AlgorithmSpecification.TrainingImage", "", "an image URI or name")
    if algo.get("TrainingInputMode", "File") != "File":
        notes.append(
            f"AlgorithmSpecification.TrainingInputMode {algo['TrainingInputMode']} runs as "
            "File here: channels are downloaded before the script starts"
        )
    hps = dict(request.get("HyperParameters") or {})
    return JobPlan(
        name=name,
        arn=f"arn:aws:sagemaker:{region}:000000000000:training-job/{name.lower()}",
        region=region,
        image=image,
        launch=Launch(
            tuple(algo.get("ContainerEntrypoint", ())) + tuple(algo.get("ContainerArguments", ()))
        ),
        hyperparameters=hps,
        environment=dict(request.get("Environment") or {}),
        instance_type=resources.get("InstanceType", "ml.m5.large"),
        instance_count=int(resources.get("InstanceCount", 1)),
        volume_gb=int(resources.get("VolumeSizeInGB", 30)),
        keep_alive_seconds=int(resources.get("KeepAlivePeriodInSeconds", 0)),
        channels=tuple(_channel(i, c) for i, c in enumerate(request.get("InputDataConfig", []))),
        output_s3=request["OutputDataConfig"]["S3OutputPath"],
        checkpoint_s3=checkpoint.get("S3Uri"),
        checkpoint_path=checkpoint.get("LocalPath") or contract.DEFAULT_CHECKPOINT_PATH,
        max_runtime_seconds=int(stopping.get("MaxRuntimeInSeconds", 86400)),
        max_wait_seconds=stopping.get("MaxWaitTimeInSeconds"),
        spot=bool(request.get("EnableManagedSpotTraining", False)),
        retry_attempts=int((request.get("RetryStrategy") or {}).get("MaximumRetryAttempts", 0)),
        metric_definitions=tuple(
            (m["Name"], m["Regex"]) for m in algo.get("MetricDefinitions", [])
        ),
        rules=tuple(_rule_names(request.get("DebugRuleConfigurations", []))),
        tensorboard_s3=tensorboard.get("S3OutputPath"),
        tensorboard_path=tensorboard.get("LocalPath") if tensorboard else None,
        pool_key=_pool_key(request, image),
        request=request,
        notes=tuple(notes),
    )


def _refusals(request: dict[str, Any]) -> list[str]:
    """Raise for what cannot run here; return notes for what is only partly honoured."""
    notes = []
    if request["ResourceConfig"].get("InstanceGroups"):
        raise ConfigError(
            "ResourceConfig.InstanceGroups",
            "given",
            "heterogeneous clusters do not run locally; use InstanceType and InstanceCount",
        )
    if request["AlgorithmSpecification"].get("AlgorithmName"):
        raise ConfigError(
            "AlgorithmSpecification.AlgorithmName",
            request["AlgorithmSpecification"]["AlgorithmName"],
            "marketplace algorithms do not run locally; give a TrainingImage",
        )
    if request.get("VpcConfig"):
        notes.append("VpcConfig is accepted and not applied: jobs run on this machine")
    if request.get("ProfilerRuleConfigurations"):
        notes.append("ProfilerRuleConfigurations are not evaluated locally")
    return notes


def _channel(index: int, raw: dict[str, Any]) -> Channel:
    where = f"InputDataConfig[{index}]"
    source = raw.get("DataSource", {})
    s3 = source.get("S3DataSource")
    if s3 is None:
        kind = next(iter(source), "none")
        raise ConfigError(f"{where}.DataSource", kind, "only S3DataSource runs locally")
    data_type = s3.get("S3DataType", "S3Prefix")
    if data_type not in ("S3Prefix", "ManifestFile"):
        raise ConfigError(
            f"{where}.DataSource.S3DataSource.S3DataType", data_type, "S3Prefix or ManifestFile"
        )
    uri = s3["S3Uri"]
    if not uri.startswith(("s3://", "file://")):
        raise ConfigError(f"{where}.DataSource.S3DataSource.S3Uri", uri, "s3://bucket/prefix")
    return Channel(
        name=raw["ChannelName"],
        uri=uri,
        data_type=data_type,
        distribution=s3.get("S3DataDistributionType", "FullyReplicated"),
        content_type=raw.get("ContentType"),
        compression=raw.get("CompressionType"),
    )


def _rule_names(configs: list[dict[str, Any]]) -> list[str]:
    """Built-in Debugger rules name the function in RuleParameters.rule_to_invoke."""
    names = []
    for config in configs:
        params = config.get("RuleParameters") or {}
        names.append(params.get("rule_to_invoke") or config["RuleConfigurationName"])
    return names


def _pool_key(request: dict[str, Any], image: str) -> dict[str, Any]:
    """What a following job must match to reuse a warm pool: the resource settings (AWS's
    "matching training jobs": instance type and count, volume, role, network settings) and,
    locally, the image the hosts run. Not code, hyperparameters or data."""
    res = request["ResourceConfig"]
    return {
        "InstanceType": res.get("InstanceType"),
        "InstanceCount": res.get("InstanceCount", 1),
        "VolumeSizeInGB": res.get("VolumeSizeInGB", 30),
        "VolumeKmsKeyId": res.get("VolumeKmsKeyId"),
        "RoleArn": request.get("RoleArn"),
        "VpcConfig": request.get("VpcConfig"),
        "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
        "EnableInterContainerTrafficEncryption": request.get(
            "EnableInterContainerTrafficEncryption", False
        ),
        "TrainingImage": image,
    }
