"""The one module that talks to the SageMaker Python SDK v2 (``sagemaker<3``).

It makes sessions, the PyTorch estimator and the HyperparameterTuner from the plain
arguments in ``mapping``. SDK v3 removed the Estimator API (its ModelTrainer has no
smddp, no Debugger rules); its builders are the sibling ``sdk_v3``.
"""

from __future__ import annotations

from typing import Any

import boto3
from sagemaker.debugger import Rule, TensorBoardOutputConfig, rule_configs
from sagemaker.inputs import TrainingInput
from sagemaker.pytorch import PyTorch
from sagemaker.session import Session
from sagemaker.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperbandStrategyConfig,
    HyperparameterTuner,
    IntegerParameter,
    StrategyConfig,
    TuningJobCompletionCriteriaConfig,
    WarmStartConfig,
    WarmStartTypes,
)

from sm_toolkit import contract
from sm_toolkit.aws import mapping
from sm_toolkit.spec import JobSpec

TELEMETRY_OPT_OUT = contract.SDK_TELEMETRY_OPT_OUT
_PARAMETERS = {
    "CategoricalParameter": CategoricalParameter,
    "ContinuousParameter": ContinuousParameter,
    "IntegerParameter": IntegerParameter,
}


def _validate_config_once(config: dict | None = None) -> None:
    """``validate_sagemaker_config`` with the schema compiled once and each config checked
    once. The SDK re-checks its whole JSON schema against the meta-schema on every config
    lookup (~0.5 s each, ~20 per fit); the config itself is still validated."""
    import json

    import jsonschema
    from sagemaker.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA as schema

    key = json.dumps(config, sort_keys=True, default=str)
    if key in _VALIDATED:
        return
    if not _VALIDATOR:
        _VALIDATOR.append(jsonschema.validators.validator_for(schema)(schema))
    _VALIDATOR[0].validate(config)
    _VALIDATED.add(key)


_VALIDATED: set[str] = set()
_VALIDATOR: list[Any] = []


def _install_fast_config_validation() -> None:
    import sagemaker.config.config
    import sagemaker.session
    import sagemaker.utils

    # Every module that imported the SDK's function by name (each config lookup, config
    # loading, and Session(sagemaker_config=...)).
    for module in (sagemaker.utils, sagemaker.config.config, sagemaker.session):
        module.validate_sagemaker_config = _validate_config_once


class CaptureSession(Session):
    """A Session whose create-job calls are recorded instead of sent (render)."""

    captured: list[tuple[str, dict[str, Any]]]

    def _intercept_create_request(self, request, create, func_name=None):  # noqa: D401
        self.captured.append((func_name, request))
        return None


def make_session(
    boto_session: boto3.Session,
    *,
    bucket: str,
    sagemaker_config: dict[str, Any] | None = None,
    session_class: type[Session] = Session,
) -> Session:
    """A SageMaker session that never asks STS for the account (bucket given)."""
    _install_fast_config_validation()
    return session_class(
        boto_session=boto_session, default_bucket=bucket, sagemaker_config=sagemaker_config
    )


def user_sdk_config(opt_out_telemetry: bool) -> dict[str, Any] | None:
    """The user's own SDK config files, with telemetry opted out when asked."""
    from sagemaker.config import load_sagemaker_config

    _install_fast_config_validation()
    return contract.with_telemetry_opt_out(load_sagemaker_config(), opt_out_telemetry)


def build_estimator(spec: JobSpec, session: Session) -> PyTorch:
    """The real ``sagemaker.pytorch.PyTorch`` estimator for a spec."""
    kwargs = mapping.estimator_kwargs(spec)
    if spec.tuning is None:  # the tuning API carries neither rules nor TensorBoard config
        if spec.rules:
            kwargs["rules"] = [Rule.sagemaker(getattr(rule_configs, n)()) for n in spec.rules]
        if spec.tensorboard is not None:
            kwargs["tensorboard_output_config"] = TensorBoardOutputConfig(
                s3_output_path=spec.tensorboard.s3_output_path,
                container_local_output_path=spec.tensorboard.local_path,
            )
    return PyTorch(sagemaker_session=session, **kwargs)


def build_tuner(spec: JobSpec, estimator: PyTorch) -> HyperparameterTuner:
    """The real ``HyperparameterTuner`` for the spec's tuning section."""
    t = spec.tuning
    assert t is not None
    ranges = {name: _PARAMETERS[cls](**kw) for name, (cls, kw) in mapping.range_kwargs(t).items()}
    kwargs = {k: v for k, v in mapping.tuner_kwargs(spec).items() if v is not None}
    if t.hyperband is not None:
        kwargs["strategy_config"] = StrategyConfig(
            HyperbandStrategyConfig(
                max_resource=t.hyperband.max_resource, min_resource=t.hyperband.min_resource
            )
        )
    if t.warm_start is not None:
        kwargs["warm_start_config"] = WarmStartConfig(
            warm_start_type=WarmStartTypes(t.warm_start.type), parents=set(t.warm_start.parents)
        )
    if t.completion is not None:
        c = t.completion
        kwargs["completion_criteria_config"] = TuningJobCompletionCriteriaConfig(
            max_number_of_training_jobs_not_improving=c.max_jobs_not_improving,
            complete_on_convergence=c.complete_on_convergence,
            target_objective_metric_value=c.target_objective_value,
        )
    return HyperparameterTuner(
        estimator=estimator, hyperparameter_ranges=ranges, base_tuning_job_name=t.job_name, **kwargs
    )


def launch_job(
    spec: JobSpec,
    boto_session: boto3.Session,
    inputs: dict[str, str],
    job_name: str,
    *,
    wait: bool,
    opt_out_telemetry: bool,
) -> tuple[str, str, dict[str, Any]]:
    """Create the job through v2; (kind, name, Describe* response)."""
    session = make_session(
        boto_session, bucket=spec.bucket, sagemaker_config=user_sdk_config(opt_out_telemetry)
    )
    estimator = build_estimator(spec, session)
    client = session.sagemaker_client
    if spec.tuning is None:
        estimator.fit(
            inputs=training_inputs(inputs),
            job_name=job_name,
            wait=wait,
            logs="All" if wait else "None",
        )
        return "training", job_name, client.describe_training_job(TrainingJobName=job_name)
    tuner = build_tuner(spec, estimator)
    tuner.fit(inputs=training_inputs(inputs), job_name=job_name, wait=False)
    if wait:
        tuner.wait()
    desc = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job_name)
    return "tuning", job_name, desc


def training_inputs(channels: dict[str, str]) -> dict[str, TrainingInput] | None:
    """S3 URIs -> the SDK's TrainingInput per channel (local paths are uploaded first)."""
    return {name: TrainingInput(uri) for name, uri in channels.items()} or None


# SageMaker local mode refuses these (checkpoints, spot) or ignores them (keep-alive, and
# the rest of the request it does not model); sm-toolkit's docker backend does them itself.
_LOCAL_MODE_DROPS = (
    "checkpoint_s3_uri",
    "checkpoint_local_path",
    "use_spot_instances",
    "max_wait",
    "keep_alive_period_in_seconds",
    "max_retry_attempts",
    "code_location",
)


def build_local_estimator(spec: JobSpec, session: Session, image: str) -> PyTorch:
    """The spec's estimator for SageMaker local mode: one ``local`` container per instance,
    running ``image``. The environment still names the checkpoint folder (SM_CHECKPOINT_DIR)."""
    kwargs = mapping.estimator_kwargs(spec)
    for key in _LOCAL_MODE_DROPS:
        kwargs.pop(key, None)
    kwargs.update(instance_type="local", image_uri=image)
    return PyTorch(sagemaker_session=session, **kwargs)
