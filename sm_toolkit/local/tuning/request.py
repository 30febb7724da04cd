"""Read a CreateHyperParameterTuningJob request into what the local tuner needs.

The input is the request as botocore takes it (sm-toolkit's render, SageMaker's SDK, the AWS
CLI's ``--cli-input-json``). It is checked against botocore's service model first (types,
required members, minimums); the enums botocore leaves to the service (strategy, scaling,
objective type, ...) are checked here against the same model's enum lists, and so are the
service-side rules the docs state (Grid takes categorical ranges only, Hyperband needs early
stopping Off, Logarithmic needs a positive range). A request the local tuner cannot honour
raises :class:`~sm_toolkit.errors.ConfigError` naming the request field, in one line.

Values stay as sent: range bounds are parsed to numbers, but categorical values keep their
encoding (framework estimators JSON-encode them, ``"\\"sgd\\""``), because that is the string
AMT passes to each trial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sm_toolkit import contract
from sm_toolkit.errors import MISSING, ConfigError

CONFIG = "HyperParameterTuningJobConfig"
DEFINITION = "TrainingJobDefinition"
# Range fields are named from ParameterRanges on (it exists only in the config): the whole
# path would pass the 80 characters a ConfigError shows of a field name.
RANGES = "ParameterRanges"
# SageMaker infers Hyperband's MaxResource from the first of these static hyperparameters.
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
_RANGE_KINDS = {
    "IntegerParameterRanges": "integer",
    "ContinuousParameterRanges": "continuous",
    "CategoricalParameterRanges": "categorical",
}


@dataclass(frozen=True)
class ParamRange:
    """One tuned hyperparameter. Numeric ranges have min/max/scaling, categorical ``values``
    (the strings as sent)."""

    name: str
    type: str  # integer | continuous | categorical
    min: float | None = None
    max: float | None = None
    scaling: str = "Auto"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Objective:
    metric: str
    type: str  # Maximize | Minimize
    regex: str  # from TrainingJobDefinition.AlgorithmSpecification.MetricDefinitions


@dataclass(frozen=True)
class Completion:
    target_objective_value: float | None = None
    max_jobs_not_improving: int | None = None
    complete_on_convergence: bool = False


@dataclass(frozen=True)
class Hyperband:
    min_resource: int
    max_resource: int


@dataclass(frozen=True)
class WarmStart:
    type: str  # IdenticalDataAndAlgorithm | TransferLearning
    parents: tuple[str, ...]


@dataclass(frozen=True)
class TuningConfig:
    """A tuning request as the local tuner reads it (pure data)."""

    job_name: str
    strategy: str
    objective: Objective
    ranges: Mapping[str, ParamRange]
    max_jobs: int | None  # None: no limit other than the runtime or a completion criterion
    max_parallel_jobs: int
    max_runtime_seconds: int | None = None
    early_stopping: str = "Off"
    completion: Completion | None = None
    hyperband: Hyperband | None = None
    random_seed: int | None = None
    warm_start: WarmStart | None = None
    static_hyperparameters: Mapping[str, str] = field(default_factory=dict)


def input_shape(operation: str) -> Any:
    """botocore's input shape of a SageMaker operation (the service model, as data)."""
    return contract.service_model().operation_model(operation).input_shape


def _enum(*path: str) -> tuple[str, ...]:
    shape = input_shape("CreateHyperParameterTuningJob")
    for name in path:
        shape = shape.member if name == "[]" else shape.members[name]
    return tuple(shape.enum)


def validate_shape(request: Mapping[str, Any], operation: str) -> None:
    """Raise ConfigError (first problem, one line) if botocore's model rejects ``request``."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(dict(request), input_shape(operation))
    if report.has_errors():
        # One line per problem, each naming the member; the first is enough to act on.
        first = report.generate_report().splitlines()[0].strip()
        raise ConfigError(operation, "request", f"botocore's service model says: {first}")


def read_tuning_request(request: Mapping[str, Any]) -> TuningConfig:
    """The tuning config of a CreateHyperParameterTuningJob request; ConfigError if bad."""
    if CONFIG not in request:
        raise ConfigError(CONFIG, MISSING, "a CreateHyperParameterTuningJob request is needed")
    validate_shape(request, "CreateHyperParameterTuningJob")
    _refuse_unsupported(request)
    config, definition = request[CONFIG], request[DEFINITION]
    strategy = _one_of(f"{CONFIG}.Strategy", config["Strategy"], _enum(CONFIG, "Strategy"))
    early = _one_of(
        f"{CONFIG}.TrainingJobEarlyStoppingType",
        config.get("TrainingJobEarlyStoppingType", "Off"),
        _enum(CONFIG, "TrainingJobEarlyStoppingType"),
    )
    ranges = read_ranges(config.get("ParameterRanges", {}))
    static = dict(definition.get("StaticHyperParameters", {}))
    limits = config["ResourceLimits"]
    return TuningConfig(
        job_name=request["HyperParameterTuningJobName"],
        strategy=strategy,
        objective=_objective(config, definition),
        ranges=ranges,
        max_jobs=_max_jobs(strategy, limits, ranges),
        max_parallel_jobs=int(limits["MaxParallelTrainingJobs"]),
        max_runtime_seconds=limits.get("MaxRuntimeInSeconds"),
        early_stopping=early,
        completion=_completion(config.get("TuningJobCompletionCriteria")),
        hyperband=_hyperband(strategy, early, config.get("StrategyConfig"), static),
        random_seed=config.get("RandomSeed"),
        warm_start=_warm_start(request.get("WarmStartConfig")),
        static_hyperparameters=static,
    )


def _refuse_unsupported(request: Mapping[str, Any]) -> None:
    if request.get("TrainingJobDefinitions"):
        raise ConfigError(
            "TrainingJobDefinitions",
            "[...]",
            "one TrainingJobDefinition (multi-algorithm tuning is not run locally)",
        )
    if DEFINITION not in request:
        raise ConfigError(DEFINITION, MISSING, "the training job every trial runs")
    if request.get("Autotune"):
        raise ConfigError("Autotune", request["Autotune"], "absent (autotune is not run locally)")
    if request[CONFIG].get("ParameterRanges", {}).get("AutoParameters"):
        raise ConfigError(f"{RANGES}.AutoParameters", "[...]", "absent (needs Autotune)")
    algorithm = request[DEFINITION]["AlgorithmSpecification"]
    if not algorithm.get("TrainingImage"):
        raise ConfigError(
            f"{DEFINITION}.AlgorithmSpecification.TrainingImage",
            MISSING,
            "a training image (AlgorithmName, a marketplace algorithm, is not run locally)",
        )
    resources = request[DEFINITION].get("HyperParameterTuningResourceConfig") or {}
    if resources.get("InstanceConfigs"):
        raise ConfigError(
            f"{DEFINITION}.HyperParameterTuningResourceConfig.InstanceConfigs",
            "[...]",
            "InstanceType and InstanceCount (a list of instance configs is not run locally)",
        )


def _one_of(field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(field_name, value, "one of " + ", ".join(allowed))
    return value


def _objective(config: Mapping[str, Any], definition: Mapping[str, Any]) -> Objective:
    where = f"{CONFIG}.HyperParameterTuningJobObjective"
    objective = config.get("HyperParameterTuningJobObjective")
    if not objective:
        raise ConfigError(where, MISSING, "Type and MetricName")
    kind = _one_of(
        f"{where}.Type",
        objective["Type"],
        _enum(CONFIG, "HyperParameterTuningJobObjective", "Type"),
    )
    metric = objective["MetricName"]
    definitions = definition["AlgorithmSpecification"].get("MetricDefinitions") or []
    regex = next((d["Regex"] for d in definitions if d["Name"] == metric), None)
    if regex is None:
        names = ", ".join(d["Name"] for d in definitions) or "none"
        raise ConfigError(
            f"{where}.MetricName",
            metric,
            f"one of {DEFINITION}.AlgorithmSpecification.MetricDefinitions ({names})",
        )
    return Objective(metric=metric, type=kind, regex=regex)


def read_ranges(parameter_ranges: Mapping[str, Any]) -> dict[str, ParamRange]:
    """``ParameterRanges`` -> name -> range, in the order the request lists them."""
    out: dict[str, ParamRange] = {}
    for key in parameter_ranges:  # the request's own order
        kind = _RANGE_KINDS.get(key)
        if kind is None:  # AutoParameters, refused before
            continue
        for i, item in enumerate(parameter_ranges.get(key) or []):
            where = f"{RANGES}.{key}[{i}]"
            if item["Name"] in out:
                raise ConfigError(f"{where}.Name", item["Name"], "each name tuned once")
            if kind == "categorical":
                out[item["Name"]] = ParamRange(item["Name"], kind, values=tuple(item["Values"]))
            else:
                out[item["Name"]] = _numeric_range(item, kind, where)
    if not out:
        raise ConfigError(RANGES, MISSING, "at least one Integer, Continuous or Categorical range")
    return out


def _numeric_range(item: Mapping[str, Any], kind: str, where: str) -> ParamRange:
    low = _number(f"{where}.MinValue", item["MinValue"], kind)
    high = _number(f"{where}.MaxValue", item["MaxValue"], kind)
    if low > high:
        raise ConfigError(f"{where}.MaxValue", item["MaxValue"], f"at least MinValue ({low})")
    key = "IntegerParameterRanges" if kind == "integer" else "ContinuousParameterRanges"
    scaling = _one_of(
        f"{where}.ScalingType",
        item.get("ScalingType", "Auto"),
        _enum(CONFIG, "ParameterRanges", key, "[]", "ScalingType"),
    )
    if scaling == "Logarithmic" and low <= 0:
        raise ConfigError(f"{where}.ScalingType", scaling, "Logarithmic needs MinValue > 0")
    if scaling == "ReverseLogarithmic" and (kind == "integer" or not 0 <= low <= high < 1):
        raise ConfigError(
            f"{where}.ScalingType", scaling, "ReverseLogarithmic is for continuous 0 <= x < 1"
        )
    return ParamRange(item["Name"], kind, min=low, max=high, scaling=scaling)


def _number(field_name: str, text: str, kind: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (kind == "integer" and value != int(value)):
        raise ConfigError(
            field_name, text, f"a finite {'integer' if kind == 'integer' else 'number'}"
        )
    return int(value) if kind == "integer" else value


def grid_size(ranges: Mapping[str, ParamRange]) -> int:
    """Number of distinct combinations of categorical ranges (what Grid runs)."""
    return math.prod(len(r.values) for r in ranges.values())


def _max_jobs(strategy: str, limits: Mapping[str, Any], ranges: Mapping[str, ParamRange]):
    where = f"{CONFIG}.ResourceLimits.MaxNumberOfTrainingJobs"
    given = limits.get("MaxNumberOfTrainingJobs")
    if strategy == "Grid":
        numeric = [r.name for r in ranges.values() if r.type != "categorical"]
        if numeric:
            raise ConfigError(RANGES, numeric[0], "Grid takes categorical ranges only")
        size = grid_size(ranges)
        if given is not None and given != size:
            raise ConfigError(where, given, f"absent or the number of combinations ({size})")
        return size
    if given is None and limits.get("MaxRuntimeInSeconds") is None:
        raise ConfigError(where, MISSING, "a number of trials (or MaxRuntimeInSeconds)")
    return given


def _completion(criteria: Mapping[str, Any] | None) -> Completion | None:
    if not criteria:
        return None
    improving = criteria.get("BestObjectiveNotImproving") or {}
    convergence = (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence")
    return Completion(
        target_objective_value=criteria.get("TargetObjectiveMetricValue"),
        max_jobs_not_improving=improving.get("MaxNumberOfTrainingJobsNotImproving"),
        complete_on_convergence=convergence == "Enabled",
    )


def _hyperband(strategy: str, early: str, strategy_config, static: Mapping[str, str]):
    config = (strategy_config or {}).get("HyperbandStrategyConfig")
    if strategy != "Hyperband":
        if config:
            raise ConfigError(
                f"{CONFIG}.StrategyConfig",
                "HyperbandStrategyConfig",
                "only with Strategy Hyperband",
            )
        return None
    if early != "Off":
        raise ConfigError(f"{CONFIG}.TrainingJobEarlyStoppingType", early, "Off with Hyperband")
    config = config or {}
    low = int(config.get("MinResource", 1))
    high = config.get("MaxResource")
    if high is None:
        key = epochs_key(static)
        if key is None:
            raise ConfigError(
                f"{CONFIG}.StrategyConfig.HyperbandStrategyConfig.MaxResource",
                MISSING,
                "set it, or give a static hyperparameter named one of " + ", ".join(EPOCH_KEYS),
            )
        high = _number(f"{DEFINITION}.StaticHyperParameters.{key}", _plain(static[key]), "integer")
    if low > high:
        raise ConfigError(
            f"{CONFIG}.StrategyConfig.HyperbandStrategyConfig.MinResource",
            low,
            f"at most MaxResource ({high})",
        )
    return Hyperband(min_resource=low, max_resource=int(high))


def epochs_key(static: Mapping[str, str]) -> str | None:
    """The static hyperparameter SageMaker reads Hyperband's resource from, if any."""
    return next((k for k in EPOCH_KEYS if k in static), None)


def _plain(text: str) -> str:
    return str(decode_value(text))


def _warm_start(config: Mapping[str, Any] | None) -> WarmStart | None:
    if not config:
        return None
    kind = _one_of(
        "WarmStartConfig.WarmStartType",
        config["WarmStartType"],
        _enum("WarmStartConfig", "WarmStartType"),
    )
    parents = tuple(
        p["HyperParameterTuningJobName"] for p in config["ParentHyperParameterTuningJobs"]
    )
    if not parents:
        raise ConfigError("WarmStartConfig.ParentHyperParameterTuningJobs", [], "1 to 5 parents")
    return WarmStart(type=kind, parents=parents)


def is_user_hyperparameter(name: str) -> bool:
    """False for the ones SageMaker adds (sagemaker_program, _tuning_objective_metric, ...)."""
    return not (name.startswith("sagemaker_") or name.startswith("_"))


def decode_value(text: Any) -> Any:
    """A hyperparameter string as the training container reads it (JSON if it parses)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
