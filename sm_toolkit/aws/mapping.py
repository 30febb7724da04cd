"""Pure mapping from a JobSpec to the SageMaker SDK's estimator, trainer and tuner arguments.

Plain data in, plain data out: no SDK objects, no I/O, no environment. ``sdk_v2`` turns
these into v2 objects, ``sdk_v3`` into a v3 ``ModelTrainer``; both start from this data
(environment, tags, metrics, ranges, tuner settings), and ``check_v3`` says what v3
cannot express.
"""

from __future__ import annotations

from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.spec import JobSpec
from sm_toolkit.spec.rules import grid_size
from sm_toolkit.spec.tuning import CategoricalRange, ContinuousRange, TuningSpec

# The image is ours, so the framework version only labels the request (the SDK skips its
# DLC version tables whenever image_uri is given).
FRAMEWORK_VERSION = "2.13.0"
PY_VERSION = "py311"
# Environment the project's training code reads (sm_toolkit.runtime): where SageMaker
# syncs checkpoints and TensorBoard files, which SageMaker does not otherwise tell it.
CHECKPOINT_DIR_ENV = "SM_CHECKPOINT_DIR"
TENSORBOARD_DIR_ENV = "SM_TENSORBOARD_DIR"
# sagemaker-training reads torchrun's --nproc_per_node from this hyperparameter.
NPROC_HYPERPARAMETER = "sagemaker_mpi_num_of_processes_per_host"


def distribution_dict(spec: JobSpec) -> dict[str, Any] | None:
    """The SDK's ``distribution`` argument for the spec's strategy."""
    d = spec.distribution
    if d.type == "none":
        return None
    if d.type == "smddp":
        opts = {"enabled": True, "custom_mpi_options": d.custom_mpi_options}
        return {"smdistributed": {"dataparallel": opts}}
    if d.type == "pytorchddp":
        return {"pytorchddp": {"enabled": True}}
    if d.type == "torch_distributed":
        return {"torch_distributed": {"enabled": True}}
    if d.type == "smp":  # SMP v2: torchrun plus smdistributed.modelparallel (SDK v2 docs)
        smp = {"enabled": True, "parameters": d.mp_parameters()}
        return {"torch_distributed": {"enabled": True}, "smdistributed": {"modelparallel": smp}}
    assert d.type == "mpi", d.type
    return {
        "mpi": {
            "enabled": True,
            "processes_per_host": d.processes_per_host,
            "custom_mpi_options": d.custom_mpi_options,
        }
    }


def hyperparameters(spec: JobSpec) -> dict[str, Any]:
    """The user's hyperparameters plus what the container needs from the distribution."""
    hps: dict[str, Any] = dict(spec.hyperparameters)
    d = spec.distribution
    if d.type in ("torch_distributed", "smp") and d.processes_per_host is not None:
        hps[NPROC_HYPERPARAMETER] = d.processes_per_host
    return hps


def environment(spec: JobSpec) -> dict[str, str]:
    env = dict(spec.environment)
    if spec.checkpoint is not None:
        env.setdefault(CHECKPOINT_DIR_ENV, spec.checkpoint.local_path)
    if spec.tensorboard is not None:
        env.setdefault(TENSORBOARD_DIR_ENV, spec.tensorboard.local_path)
    if spec.tracking is not None:  # the same MLflow run target locally and on SageMaker
        for key, value in (
            (contract.MLFLOW_TRACKING_URI_ENV, spec.tracking.uri),
            (contract.MLFLOW_EXPERIMENT_ENV, spec.tracking.experiment),
        ):
            if value is not None:
                env[key] = value
    return env


def tag_dicts(spec: JobSpec) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in spec.tags.items()]


def metric_dicts(spec: JobSpec) -> list[dict[str, str]]:
    return [{"Name": m.name, "Regex": m.regex} for m in spec.metrics]


# SDK v3's ModelTrainer has Torchrun, MPI and SMP, but no smdistributed.dataparallel launcher.
_V3_NO_SMDDP = (
    "SDK v3 has no smdistributed.dataparallel launcher: use distribution type "
    "torch_distributed (the trainer picks the smddp backend where smdistributed.dataparallel "
    "is importable, as in the AWS PyTorch GPU images) or --sdk v2"
)


def check_v3(spec: JobSpec) -> None:
    """Raise ConfigError for what SDK v3 cannot express, naming the field and the way out."""
    if spec.distribution.type in ("smddp", "pytorchddp"):
        raise ConfigError("distribution.type", spec.distribution.type, _V3_NO_SMDDP)
    if spec.rules:
        raise ConfigError(
            "rules",
            list(spec.rules),
            "SDK v3's ModelTrainer has no SageMaker Debugger rules: remove rules or use --sdk v2",
        )
    if spec.tuning is not None and spec.tuning.random_seed == 0:  # v3 tests `if random_seed`
        raise ConfigError(
            "tuning.random_seed", 0, "SDK v3's tuner drops a seed of 0: use 1 or more, or --sdk v2"
        )


def estimator_kwargs(spec: JobSpec) -> dict[str, Any]:
    """Keyword arguments for ``sagemaker.pytorch.PyTorch`` (rules and TensorBoard aside,
    which need SDK objects: see ``sdk_v2``)."""
    kw: dict[str, Any] = {
        "entry_point": spec.entry_point,
        "source_dir": spec.source_dir,
        "hyperparameters": hyperparameters(spec),
        "image_uri": spec.image_uri,
        "framework_version": FRAMEWORK_VERSION,
        "py_version": PY_VERSION,
        "role": spec.role,
        "instance_type": spec.instance.type,
        "instance_count": spec.instance.count,
        "volume_size": spec.instance.volume_size_gb,
        "max_run": spec.max_run_seconds,
        "output_path": spec.output_path,
        # Staging code next to the output avoids the SDK's default bucket, which costs an
        # STS call (and so a route to AWS) just to learn the account id.
        "code_location": spec.output_path.rstrip("/"),
        "environment": environment(spec),
        "tags": [{"Key": k, "Value": v} for k, v in spec.tags.items()] or None,
        "metric_definitions": [{"Name": m.name, "Regex": m.regex} for m in spec.metrics] or None,
        "distribution": distribution_dict(spec),
    }
    if spec.spot is not None:
        kw["use_spot_instances"] = True
        kw["max_wait"] = spec.spot.max_wait_seconds
    if spec.checkpoint is not None:
        kw["checkpoint_s3_uri"] = spec.checkpoint.s3_uri
        kw["checkpoint_local_path"] = spec.checkpoint.local_path
    if spec.warm_pool is not None and spec.tuning is None:
        kw["keep_alive_period_in_seconds"] = spec.warm_pool.keep_alive_seconds
    if spec.max_retry_attempts is not None:
        kw["max_retry_attempts"] = spec.max_retry_attempts
    return {k: v for k, v in kw.items() if v is not None}


def range_kwargs(t: TuningSpec) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each tuned name -> (parameter class name, its constructor arguments)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, r in t.ranges.items():
        if isinstance(r, CategoricalRange):
            out[name] = ("CategoricalParameter", {"values": [_as_value(v) for v in r.values]})
        elif isinstance(r, ContinuousRange):
            out[name] = (
                "ContinuousParameter",
                {"min_value": r.min, "max_value": r.max, "scaling_type": r.scaling},
            )
        else:
            out[name] = (
                "IntegerParameter",
                {"min_value": r.min, "max_value": r.max, "scaling_type": r.scaling},
            )
    return out


def _as_value(v: object) -> object:
    # A YAML `true` means the string "True" to a script's argparse, as SageMaker sends it.
    return str(v) if isinstance(v, bool) else v


def tuner_kwargs(spec: JobSpec) -> dict[str, Any]:
    """Plain keyword arguments of ``HyperparameterTuner`` (ranges and configs aside)."""
    t = spec.tuning
    assert t is not None
    max_jobs = t.max_jobs if t.max_jobs is not None else grid_size(t)
    return {
        "objective_metric_name": t.objective.metric,
        "objective_type": t.objective.type,
        "metric_definitions": [{"Name": m.name, "Regex": m.regex} for m in spec.metrics],
        "strategy": t.strategy,
        "max_jobs": max_jobs,
        "max_parallel_jobs": t.max_parallel_jobs,
        "max_runtime_in_seconds": t.max_runtime_seconds,
        "early_stopping_type": t.early_stopping,
        "random_seed": t.random_seed,
        "tags": [{"Key": k, "Value": v} for k, v in spec.tags.items()] or None,
    }
