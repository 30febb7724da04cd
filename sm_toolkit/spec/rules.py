"""Cross-field rules of the job spec, checked once when the spec is loaded.

The SageMaker SDK skips its own checks whenever an image URI is given (always, with our
container), botocore checks only required fields and minimums, and moto accepts nearly
anything; so these rules are the only thing between a typo and a failed job on AWS.
Each rule has an id; ``RULES`` is the table the README prints, with each rule's source.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from sm_toolkit import contract
from sm_toolkit.errors import MISSING, ConfigError
from sm_toolkit.spec.job import CHANNEL_PATTERN, ENV_KEY_PATTERN, S3_URI_PATTERN, JobSpec
from sm_toolkit.spec.smp import check_smp
from sm_toolkit.spec.tuning import CategoricalRange, ContinuousRange, IntegerRange, TuningSpec


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    source: str


RULES = (
    Rule(
        "smddp-instance",
        "smddp and pytorchddp run only on the instance types in "
        "data/smddp_instances.yaml (P4d, P4de, P5)",
        "AWS docs: SMDDP supported instance types; SDK PR #4698 dropped the SDK's own check",
    ),
    Rule(
        "pytorchddp-is-smddp",
        "pytorchddp is rewritten into smdistributed.dataparallel "
        "(SMDDP) by SDK >= 2.221.1; a notice says so",
        "SDK PR #4698, sagemaker/pytorch/estimator.py",
    ),
    Rule(
        "torchrun-entry-point",
        "torch_distributed needs a .py entry point",
        "SDK fw_utils.validate_torch_distributed_distribution (checked even with image_uri)",
    ),
    Rule(
        "smp-instance",
        "smp (SageMaker model parallelism v2) runs only on the instance types in "
        "data/smp_v2.yaml (P4d, P4de, P5)",
        "AWS docs: SMP v2 supported frameworks and instance types",
    ),
    Rule(
        "smp-image",
        "with smp, image_uri is an SMP v2 image (smdistributed-modelparallel in the job's "
        "region) whose tag is one SMP v2 publishes (data/smp_v2.yaml), or TAG-suffix for an "
        "image built FROM it",
        "SDK image_uri_config/pytorch-smp.json (tested against the installed SDK)",
    ),
    Rule(
        "smp-degrees",
        "hybrid_shard_degree (0 or), expert_parallel_degree and tensor_parallel_degree divide "
        "the world size (hosts x processes per host, default the instance type's GPUs); "
        "expert_parallel_degree divides hyperparameters.n_experts; tensor_parallel_degree 1 "
        "for the project's entrypoints",
        "AWS docs: SMP v2 core feature configuration parameters",
    ),
    Rule(
        "smp-hyperparameters",
        "with smp, SMP's parameter names (and mp_parameters) are not hyperparameters",
        "SDK v2 sends the distribution's parameters as the mp_parameters hyperparameter",
    ),
    Rule(
        "keep-alive-range",
        "warm_pool.keep_alive_seconds within 0..3600",
        "AWS docs: managed warm pools (botocore's model allows 21600)",
    ),
    Rule(
        "spot-warm-pool",
        "spot and warm_pool exclude each other",
        "AWS docs: managed warm pools are not supported with managed spot training",
    ),
    Rule(
        "spot-max-wait",
        "spot.max_wait_seconds >= max_run_seconds",
        "API StoppingCondition.MaxWaitTimeInSeconds",
    ),
    Rule(
        "input-uri",
        "an input is an s3://bucket/prefix URI or a local path",
        "API S3DataSource.S3Uri",
    ),
    Rule(
        "channel-name", "input channel names match [A-Za-z0-9.-_]{1,64}", "API Channel.ChannelName"
    ),
    Rule(
        "env-key",
        "environment keys match [a-zA-Z_][a-zA-Z0-9_]*",
        "API CreateTrainingJob.Environment",
    ),
    Rule(
        "tracking-uri",
        "tracking.uri is a path, file:/path, http(s)://host, sqlite:///path, databricks or "
        "a SageMaker MLflow tracking server ARN; given once (tracking.uri or environment)",
        "MLflow tracking URIs; AWS docs: SageMaker managed MLflow (tracking server ARN)",
    ),
    Rule(
        "tracking-experiment",
        "tracking.experiment is not empty, has no surrounding spaces or control characters",
        "MLflow experiment names",
    ),
    Rule(
        "hyperparameter-name",
        "hyperparameter names are letters, digits and . _ : - (no spaces, no leading -), "
        "values are finite numbers",
        "sagemaker-training passes each as --NAME VALUE to the script",
    ),
    Rule(
        "tag-key",
        "tag keys do not start with aws: (reserved for AWS)",
        "AWS docs: tagging best practices (the API model's pattern cannot say it)",
    ),
    Rule(
        "reserved-hyperparameter",
        "hyperparameters starting with sagemaker_ are reserved",
        "sagemaker-training: sagemaker_* keys are framework parameters",
    ),
    Rule(
        "debugger-rule",
        "rules name built-in SageMaker Debugger rules",
        "smdebug_rulesconfig built-in rule functions",
    ),
    Rule(
        "entry-point",
        "without source_dir, entry_point is one of the project's entrypoints; "
        "with it, the file exists in source_dir",
        "sm-toolkit",
    ),
    Rule("metric-unique", "metric names are unique", "API MetricDefinition"),
    Rule(
        "metric-regex",
        "each metric regex compiles and has exactly one capture group",
        "AWS docs: define training metrics (the group is the metric's value)",
    ),
    Rule(
        "tuning-objective",
        "the objective metric is one of the job's metric definitions",
        "AWS docs: AMT objective metrics",
    ),
    Rule(
        "tuning-range-bounds",
        "range min < max; Logarithmic needs min > 0; ReverseLogarithmic "
        "only on continuous ranges within 0 <= x < 1",
        "API ContinuousParameterRange.ScalingType",
    ),
    Rule(
        "tuning-range-name",
        "a tuned name is not also reserved (sagemaker_*)",
        "API ParameterRanges",
    ),
    Rule("grid-categorical", "Grid takes categorical ranges only", "AWS docs: AMT grid search"),
    Rule(
        "grid-max-jobs",
        "Grid's max_jobs, if given, equals the number of combinations "
        "(the builder fills it in: SDK 2.257 sends null otherwise)",
        "AWS docs: AMT grid search",
    ),
    Rule(
        "max-jobs-required",
        "Bayesian, Random and Hyperband need max_jobs",
        "SDK tuner: max_jobs defaults to 1 for them",
    ),
    Rule("parallel-le-max", "max_parallel_jobs <= max_jobs", "API ResourceLimits"),
    Rule(
        "hyperband-early-stopping",
        "Hyperband needs early_stopping Off",
        "API HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType",
    ),
    Rule(
        "hyperband-config",
        "the hyperband section only with strategy Hyperband, min_resource <= max_resource",
        "API HyperParameterTuningJobStrategyConfig",
    ),
    Rule(
        "tuning-drops",
        "tuning jobs cannot carry warm pools, debugger rules or TensorBoard "
        "config; they are dropped with a notice",
        "API HyperParameterTuningResourceConfig, HyperParameterAlgorithmSpecification",
    ),
)


@cache
def smddp_instance_types() -> tuple[str, ...]:
    text = resources.files("sm_toolkit").joinpath("data/smddp_instances.yaml").read_text()
    return tuple(yaml.safe_load(text)["instance_types"])


@cache
def debugger_rule_names() -> tuple[str, ...]:
    import smdebug_rulesconfig as rc

    helpers = {"get_collection", "is_valid_action_object"}
    return tuple(
        n
        for n in sorted(dir(rc))
        if callable(getattr(rc, n))
        and not n.startswith("_")
        and n[0].islower()
        and n not in helpers
    )


def check(spec: JobSpec) -> None:
    """Raise ConfigError for the first rule the spec breaks."""
    _check_distribution(spec)
    _check_job(spec)
    if spec.tuning is not None:
        _check_tuning(spec, spec.tuning)


def notices(spec: JobSpec) -> list[str]:
    """What the spec asks for that the SDK or the service will change or drop."""
    out = []
    if spec.distribution.type == "pytorchddp":
        out.append(
            "distribution pytorchddp: SDK >= 2.221.1 rewrites it into "
            "smdistributed.dataparallel, so the job runs SMDDP, not torch DDP"
        )
    if spec.tuning is not None:
        dropped = [
            n
            for n, v in (
                ("warm_pool", spec.warm_pool),
                ("rules", spec.rules),
                ("tensorboard", spec.tensorboard),
            )
            if v
        ]
        if dropped:
            out.append(
                f"tuning: the tuning API cannot carry {', '.join(dropped)}; "
                "dropped from the tuning job's training jobs"
            )
    names = list(spec.hyperparameters) + (list(spec.tuning.ranges) if spec.tuning else [])
    for name in names:
        if len(name) == 1:
            out.append(
                f"hyperparameter {name}: sagemaker-training passes one-letter names "
                f"with one dash (-{name} VALUE); the script must accept -{name}"
            )
    if spec.spot is not None and spec.checkpoint is None:
        out.append("spot without checkpoint: an interrupted job restarts from scratch")
    return out


def debugger_hook_note(spec: JobSpec) -> str | None:
    """One line when the spec asks for Debugger rules: on AWS they read tensors that the
    smdebug hook saves, and the sm-toolkit image has no smdebug (see README: Debugger)."""
    if not spec.rules or spec.tuning is not None:
        return None
    return (
        f"rules ({', '.join(spec.rules)}): on AWS, Debugger rules need the smdebug hook, "
        "which the sm-toolkit image lacks, so they would find no data; run --local "
        "evaluates the ones sm-toolkit knows"
    )


def _check_distribution(spec: JobSpec) -> None:
    kind = spec.distribution.type
    if kind in ("smddp", "pytorchddp") and spec.instance.type not in smddp_instance_types():
        raise ConfigError(
            "instance.type",
            spec.instance.type,
            f"{kind} runs only on {', '.join(smddp_instance_types())}",
        )
    if kind in ("torch_distributed", "smp") and not spec.entry_point.endswith(".py"):
        raise ConfigError(
            "entry_point", spec.entry_point, f"{kind} needs a Python script ending in .py"
        )
    if kind == "smp":
        check_smp(spec, spec.distribution)


def _check_job(spec: JobSpec) -> None:
    if spec.spot is not None and spec.spot.max_wait_seconds < spec.max_run_seconds:
        raise ConfigError(
            "spot.max_wait_seconds",
            spec.spot.max_wait_seconds,
            f"must be >= max_run_seconds ({spec.max_run_seconds})",
        )
    if spec.spot is not None and spec.warm_pool is not None:
        raise ConfigError(
            "warm_pool", "with spot", "spot and warm_pool exclude each other (AWS: unsupported)"
        )
    for channel, uri in spec.inputs.items():
        # fullmatch: re.match's $ would also accept a trailing newline.
        if not re.fullmatch(CHANNEL_PATTERN, channel):
            raise ConfigError(
                f"inputs.{channel}", channel, "channel names match [A-Za-z0-9.-_]{1,64}"
            )
        if uri.startswith("s3:") and not re.fullmatch(S3_URI_PATTERN, uri):
            raise ConfigError(f"inputs.{channel}", uri, "an S3 URI looks like s3://bucket/prefix")
    for key in spec.tags:
        if key.lower().startswith("aws:"):
            raise ConfigError(f"tags.{key}", key, "tag keys starting with aws: are reserved")
    for key in spec.environment:
        if not re.fullmatch(ENV_KEY_PATTERN, key):
            raise ConfigError(f"environment.{key}", key, "keys match [a-zA-Z_][a-zA-Z0-9_]*")
    _check_tracking(spec)
    _check_names(spec)


def _check_tracking(spec: JobSpec) -> None:
    """The MLflow settings, from the tracking field or written into environment directly."""
    t = spec.tracking
    given = {
        contract.MLFLOW_TRACKING_URI_ENV: ("tracking.uri", t.uri if t else None),
        contract.MLFLOW_EXPERIMENT_ENV: ("tracking.experiment", t.experiment if t else None),
    }
    for key, (field, value) in given.items():
        if value is not None and key in spec.environment:
            raise ConfigError(
                f"environment.{key}", spec.environment[key], f"set it once: {field} or here"
            )
        where = field if value is not None else f"environment.{key}"
        value = value if value is not None else spec.environment.get(key)
        if value is None:
            continue
        if key == contract.MLFLOW_TRACKING_URI_ENV and not contract.tracking_uri_ok(value):
            raise ConfigError(where, value, contract.TRACKING_URI_HINT)
        if key == contract.MLFLOW_EXPERIMENT_ENV and not contract.experiment_name_ok(value):
            raise ConfigError(
                where, value, "an experiment name: not empty, no surrounding spaces or "
                "control characters",
            )  # fmt: skip


def _check_names(spec: JobSpec) -> None:
    for key, value in spec.hyperparameters.items():
        check_hyperparameter(key, value)
    for i, name in enumerate(spec.rules):
        if name not in debugger_rule_names():
            raise ConfigError(f"rules[{i}]", name, "one of " + ", ".join(debugger_rule_names()))
    _check_metrics(spec)


HYPERPARAMETER_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.:\-]*"


def check_hyperparameter(key: str, value: object, field: str | None = None) -> None:
    """One hyperparameter as the script will receive it (``--key value``)."""
    field = field or f"hyperparameters.{key}"
    if key.startswith("sagemaker_"):
        raise ConfigError(field, key, "names starting with sagemaker_ are reserved for the SDK")
    if not re.fullmatch(HYPERPARAMETER_NAME, key):
        raise ConfigError(
            field, key, "names are letters, digits and . _ : - (the script gets --NAME)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(field, value, "a finite number (JSON has no NaN or infinity)")


def _check_metrics(spec: JobSpec) -> None:
    for i, m in enumerate(spec.metrics):
        try:
            groups = re.compile(m.regex).groups
        except (re.error, RecursionError, OverflowError) as exc:
            raise ConfigError(
                f"metrics[{i}].regex", m.regex, f"a regex that compiles ({exc}) for {m.name}"
            ) from None
        if groups != 1:
            raise ConfigError(
                f"metrics[{i}].regex",
                m.regex,
                f"exactly one capture group (the value of {m.name}); it has {groups}",
            )
    names = [m.name for m in spec.metrics]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("metrics", name, "each metric name once")


def _check_tuning(spec: JobSpec, t: TuningSpec) -> None:
    metric_names = [m.name for m in spec.metrics]
    if t.objective.metric not in metric_names:
        raise ConfigError(
            "tuning.objective.metric",
            t.objective.metric,
            "one of the job's metrics: " + ", ".join(metric_names),
        )
    for name, r in t.ranges.items():
        _check_range(f"tuning.ranges.{name}", name, r)
    _check_strategy(t)
    if t.max_jobs is not None and t.max_parallel_jobs > t.max_jobs:
        raise ConfigError(
            "tuning.max_parallel_jobs", t.max_parallel_jobs, f"at most max_jobs ({t.max_jobs})"
        )


def _check_range(field: str, name: str, r: object) -> None:
    check_hyperparameter(name, None, field)
    if isinstance(r, CategoricalRange):
        for i, v in enumerate(r.values):
            check_hyperparameter(name, v, f"{field}.values[{i}]")
        return
    assert isinstance(r, ContinuousRange | IntegerRange)
    if not r.min < r.max:
        raise ConfigError(f"{field}.max", r.max, f"must be greater than min ({r.min})")
    if r.scaling == "Logarithmic" and r.min <= 0:
        raise ConfigError(f"{field}.min", r.min, "Logarithmic scaling needs min > 0")
    if r.scaling == "ReverseLogarithmic":
        if isinstance(r, IntegerRange):
            raise ConfigError(
                f"{field}.scaling", r.scaling, "ReverseLogarithmic only on continuous ranges"
            )
        if not (0 <= r.min and r.max < 1):
            raise ConfigError(f"{field}.max", r.max, "ReverseLogarithmic needs 0 <= min < max < 1")


def grid_size(t: TuningSpec) -> int:
    """Number of distinct combinations of a Grid search (categorical ranges only)."""
    sizes = [len(r.values) for r in t.ranges.values() if isinstance(r, CategoricalRange)]
    return math.prod(sizes)


def _check_strategy(t: TuningSpec) -> None:
    if t.strategy == "Grid":
        for name, r in t.ranges.items():
            if not isinstance(r, CategoricalRange):
                raise ConfigError(
                    f"tuning.ranges.{name}.type", r.type, "Grid takes categorical ranges only"
                )
        if t.max_jobs is not None and t.max_jobs != grid_size(t):
            raise ConfigError(
                "tuning.max_jobs",
                t.max_jobs,
                f"Grid runs every combination: leave it out or set {grid_size(t)}",
            )
    elif t.max_jobs is None:
        raise ConfigError("tuning.max_jobs", MISSING, f"{t.strategy} needs max_jobs (1..10000)")
    if t.strategy == "Hyperband" and t.early_stopping != "Off":
        raise ConfigError("tuning.early_stopping", t.early_stopping, "Hyperband needs Off")
    if t.hyperband is not None:
        if t.strategy != "Hyperband":
            raise ConfigError(
                "tuning.hyperband",
                "present",
                f"only with strategy Hyperband (strategy is {t.strategy})",
            )
        if t.hyperband.min_resource > t.hyperband.max_resource:
            raise ConfigError(
                "tuning.hyperband.min_resource",
                t.hyperband.min_resource,
                f"at most max_resource ({t.hyperband.max_resource})",
            )


def grid_combinations(t: TuningSpec) -> list[dict[str, object]]:
    """Every combination of a Grid search, in a stable order."""
    names = list(t.ranges)
    values = [t.ranges[n].values for n in names]  # type: ignore[union-attr]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
