"""The one module that talks to the SageMaker Python SDK v3 (``sagemaker>=3``).

From the same spec and the same generation-neutral ``mapping`` as ``sdk_v2``, it builds
``sagemaker.train.ModelTrainer`` and v3's ``HyperparameterTuner``, captures the request
they send, and launches them. What v3 cannot express (smddp, pytorchddp, Debugger rules)
is refused before anything is built (``mapping.check_v3``).

v3 changes the request (reference notes, SDK v3): the script runs through
``ContainerEntrypoint`` and an ``sm_drivers`` channel, a ``code`` channel carries
``source_dir``, hyperparameters hold only the user's values, and the training job name is
``<name>-<timestamp>`` (``train()`` takes no job name). The tuning API has no
ContainerEntrypoint, so v3's tuner sends v2-style ``sagemaker_program`` /
``sagemaker_submit_directory`` static hyperparameters plus the ``sm_drivers`` channel.
"""

from __future__ import annotations

import copy
import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from sagemaker.core.config.config import load_sagemaker_config
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
from sagemaker.core.shapes import (
    BestObjectiveNotImproving,
    ConvergenceDetected,
    HyperbandStrategyConfig,
    HyperParameterTuningJobStrategyConfig,
    HyperParameterTuningJobWarmStartConfig,
    ParentHyperParameterTuningJob,
    TuningJobCompletionCriteria,
)
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import (
    CheckpointConfig,
    Compute,
    InputData,
    MetricDefinition,
    OutputDataConfig,
    RetryStrategy,
    SourceCode,
    StoppingCondition,
    Tag,
    TensorBoardOutputConfig,
)
from sagemaker.train.distributed import MPI, SMP, DistributedConfig, Torchrun
from sagemaker.train.tuner import HyperparameterTuner

from sm_toolkit import contract
from sm_toolkit.aws import mapping
from sm_toolkit.spec import JobSpec

TELEMETRY_OPT_OUT = contract.SDK_TELEMETRY_OPT_OUT
CREATE_OPERATIONS = ("CreateTrainingJob", "CreateHyperParameterTuningJob")
_PARAMETERS = {
    "CategoricalParameter": CategoricalParameter,
    "ContinuousParameter": ContinuousParameter,
    "IntegerParameter": IntegerParameter,
}
# v3 warns when it cannot verify the role, which render (offline) never can.
_QUIET = ("sagemaker", "sagemaker.core.helper.iam_role_resolver")


def make_session(
    boto_session: boto3.Session, *, bucket: str, sagemaker_config: dict[str, Any] | None = None
) -> Session:
    """A v3 session that stages code in the spec's bucket (no STS call for a default one)."""
    return Session(
        boto_session=boto_session, default_bucket=bucket, sagemaker_config=sagemaker_config
    )


def user_sdk_config(opt_out_telemetry: bool) -> dict[str, Any] | None:
    """The user's own SDK config files, with telemetry opted out when asked."""
    return contract.with_telemetry_opt_out(load_sagemaker_config(), opt_out_telemetry)


def distributed(spec: JobSpec) -> DistributedConfig | None:
    """v3's ``distributed=`` for the spec's strategy (after ``mapping.check_v3``)."""
    d = spec.distribution
    if d.type == "torch_distributed":
        return Torchrun(process_count_per_node=d.processes_per_host)
    if d.type == "smp":  # v3 sends SMP's parameters as the mp_parameters hyperparameter
        return Torchrun(process_count_per_node=d.processes_per_host, smp=SMP(**d.mp_parameters()))
    if d.type == "mpi":
        options = shlex.split(d.custom_mpi_options) or None
        return MPI(process_count_per_node=d.processes_per_host, mpi_additional_options=options)
    assert d.type == "none", d.type  # smddp / pytorchddp are refused by mapping.check_v3
    return None


def _compute(spec: JobSpec) -> Compute:
    keep_alive = None
    if spec.warm_pool is not None and spec.tuning is None:  # tuning carries no warm pool
        keep_alive = spec.warm_pool.keep_alive_seconds
    return Compute(
        instance_type=spec.instance.type,
        instance_count=spec.instance.count,
        volume_size_in_gb=spec.instance.volume_size_gb,
        keep_alive_period_in_seconds=keep_alive,
        enable_managed_spot_training=True if spec.spot is not None else None,
    )


def _stopping(spec: JobSpec) -> StoppingCondition:
    wait = spec.spot.max_wait_seconds if spec.spot is not None else None
    return StoppingCondition(
        max_runtime_in_seconds=spec.max_run_seconds, max_wait_time_in_seconds=wait
    )


def build_trainer(spec: JobSpec, session: Session, *, job_name: str | None = None) -> ModelTrainer:
    """The real ``sagemaker.train.ModelTrainer`` for a spec (v3 names the job
    ``<job_name>-<timestamp>``)."""
    mapping.check_v3(spec)
    checkpoint = None
    if spec.checkpoint is not None:
        checkpoint = CheckpointConfig(
            s3_uri=spec.checkpoint.s3_uri, local_path=spec.checkpoint.local_path
        )
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=spec.role,
        base_job_name=job_name or spec.name,
        training_image=spec.image_uri,
        source_code=SourceCode(source_dir=spec.source_dir, entry_script=spec.entry_point),
        distributed=distributed(spec),
        compute=_compute(spec),
        stopping_condition=_stopping(spec),
        checkpoint_config=checkpoint,
        output_data_config=OutputDataConfig(s3_output_path=spec.output_path),
        environment=mapping.environment(spec),
        hyperparameters=dict(spec.hyperparameters),  # v3 sends the user's values only
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in mapping.tag_dicts(spec)] or None,
    )
    metrics = mapping.metric_dicts(spec)
    if metrics:
        trainer.with_metric_definitions(
            [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metrics]
        )
    if spec.tensorboard is not None and spec.tuning is None:
        trainer.with_tensorboard_output_config(
            TensorBoardOutputConfig(
                s3_output_path=spec.tensorboard.s3_output_path,
                local_path=spec.tensorboard.local_path,
            )
        )
    if spec.max_retry_attempts is not None:
        trainer.with_retry_strategy(RetryStrategy(maximum_retry_attempts=spec.max_retry_attempts))
    return trainer


def _strategy_config(spec: JobSpec) -> HyperParameterTuningJobStrategyConfig | None:
    hb = spec.tuning.hyperband
    if hb is None:
        return None
    return HyperParameterTuningJobStrategyConfig(
        hyperband_strategy_config=HyperbandStrategyConfig(
            min_resource=hb.min_resource, max_resource=hb.max_resource
        )
    )


def _completion(spec: JobSpec) -> TuningJobCompletionCriteria | None:
    c = spec.tuning.completion
    if c is None:
        return None
    kwargs: dict[str, Any] = {}
    if c.target_objective_value is not None:
        kwargs["target_objective_metric_value"] = c.target_objective_value
    if c.max_jobs_not_improving is not None:
        kwargs["best_objective_not_improving"] = BestObjectiveNotImproving(
            max_number_of_training_jobs_not_improving=c.max_jobs_not_improving
        )
    if c.complete_on_convergence is not None:
        flag = "Enabled" if c.complete_on_convergence else "Disabled"
        kwargs["convergence_detected"] = ConvergenceDetected(complete_on_convergence=flag)
    return TuningJobCompletionCriteria(**kwargs)


def _warm_start(spec: JobSpec) -> HyperParameterTuningJobWarmStartConfig | None:
    w = spec.tuning.warm_start
    if w is None:
        return None
    return HyperParameterTuningJobWarmStartConfig(
        warm_start_type=w.type,
        parent_hyper_parameter_tuning_jobs=[
            ParentHyperParameterTuningJob(hyper_parameter_tuning_job_name=p) for p in w.parents
        ],
    )


def build_tuner(spec: JobSpec, trainer: ModelTrainer) -> HyperparameterTuner:
    """v3's ``HyperparameterTuner`` for the spec's tuning section."""
    t = spec.tuning
    assert t is not None
    ranges = {name: _PARAMETERS[cls](**kw) for name, (cls, kw) in mapping.range_kwargs(t).items()}
    kwargs = {k: v for k, v in mapping.tuner_kwargs(spec).items() if v is not None}
    return HyperparameterTuner(
        model_trainer=trainer,
        hyperparameter_ranges=ranges,
        base_tuning_job_name=t.job_name,
        strategy_config=_strategy_config(spec),
        completion_criteria_config=_completion(spec),
        warm_start_config=_warm_start(spec),
        **kwargs,
    )


def input_data(channels: dict[str, str]) -> list[InputData] | None:
    """S3 URIs -> v3's InputData per channel (local paths are uploaded first)."""
    return [InputData(channel_name=n, data_source=u) for n, u in channels.items()] or None


class _Captured(Exception):
    """Raised from botocore's hook with the create request, so that it is not sent."""

    def __init__(self, operation: str, request: dict[str, Any]) -> None:
        super().__init__(f"{operation} captured")
        self.operation = operation
        self.request = request


def _stop_create_calls(boto_session: boto3.Session) -> None:
    def stop(params, model, **_):
        raise _Captured(model.name, copy.deepcopy(params))

    for op in CREATE_OPERATIONS:
        boto_session.events.register(f"before-parameter-build.sagemaker.{op}", stop)


def _record_create_calls(boto_session: boto3.Session) -> list[tuple[str, dict[str, Any]]]:
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params, model, **_):
        sent.append((model.name, copy.deepcopy(params)))

    for op in CREATE_OPERATIONS:
        boto_session.events.register(f"before-parameter-build.sagemaker.{op}", record)
    return sent


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _start(spec: JobSpec, session: Session, inputs: dict[str, str], name: str, wait: bool):
    trainer = build_trainer(spec, session, job_name=name)
    if spec.tuning is None:
        trainer.train(input_data_config=input_data(inputs), wait=wait, logs=wait)
        return None
    tuner = build_tuner(spec, trainer)
    tuner.tune(inputs=input_data(inputs), job_name=name, wait=False)
    return tuner


def capture_request(
    spec: JobSpec, session: Session, inputs: dict[str, str], job_name: str
) -> tuple[str, dict[str, Any]]:
    """(operation, request) as v3 sends it, stopped at botocore before it is sent.

    The session's boto session answers S3 itself (``render.offline_boto_session``) or is a
    real one, so v3 uploads its ``code`` and ``sm_drivers`` channels into it."""
    _stop_create_calls(session.boto_session)
    with _quiet_sdk():
        try:
            _start(spec, session, inputs, job_name, wait=False)
        except _Captured as done:
            return done.operation, done.request
    raise AssertionError("the SDK returned without a create call")


def render(spec: JobSpec, boto_session: boto3.Session, uploads: list[str], job_name: str | None):
    """``render.render`` under v3: the captured request, validated by botocore, with the
    uploads as one S3 prefix per channel v3 uploaded (it puts each file on its own)."""
    from sm_toolkit.aws.render import Rendered, staged_inputs, validate

    name = job_name or (spec.tuning.job_name if spec.tuning is not None else spec.name)
    session = make_session(boto_session, bucket=spec.bucket, sagemaker_config=TELEMETRY_OPT_OUT)
    operation, request = capture_request(spec, session, staged_inputs(spec, name), name)
    validate(session, operation, request)
    return Rendered(operation, request, _by_channel(uploads, request))


def _by_channel(uploads: list[str], request: dict[str, Any]) -> list[str]:
    definition = request.get("TrainingJobDefinition", request)
    prefixes = [
        c["DataSource"]["S3DataSource"]["S3Uri"].rstrip("/") + "/"
        for c in definition.get("InputDataConfig", [])
        if "S3DataSource" in c["DataSource"]
    ]
    out: list[str] = []
    for uri in uploads:
        uri = next((p for p in prefixes if uri.startswith(p)), uri)
        if uri not in out:
            out.append(uri)
    return out


def launch_job(
    spec: JobSpec,
    boto_session: boto3.Session,
    inputs: dict[str, str],
    job_name: str,
    *,
    wait: bool,
    opt_out_telemetry: bool,
) -> tuple[str, str, dict[str, Any]]:
    """Create the job through v3; (kind, name v3 gave it, Describe* response)."""
    config = user_sdk_config(opt_out_telemetry)
    session = make_session(boto_session, bucket=spec.bucket, sagemaker_config=config)
    sent = _record_create_calls(boto_session)
    tuner = _start(spec, session, inputs, job_name, wait=wait)  # v3's own logs and warnings
    if tuner is not None and wait:
        tuner.wait()
    operation, request = sent[-1]
    client = boto_session.client("sagemaker")
    if operation == "CreateTrainingJob":
        name = request["TrainingJobName"]
        return "training", name, client.describe_training_job(TrainingJobName=name)
    name = request["HyperParameterTuningJobName"]
    desc = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    return "tuning", name, desc
