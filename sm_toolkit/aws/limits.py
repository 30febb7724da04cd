"""The API's own limits, read from botocore's SageMaker service model as data.

botocore's ParamValidator checks types, required members and minimums only. This module
walks a request against the same model and also checks what the model declares but
botocore leaves to the service: maximum lengths and sizes, patterns, enums (instance types
among them) and number ranges, and it refuses NaN and infinity, which JSON cannot carry.
It runs on the request the SDK actually built (after its JSON quoting of hyperparameters
and its own ``sagemaker_*`` keys), and each violation names the spec field it came from.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError


@dataclass(frozen=True)
class Violation:
    path: tuple[str | int, ...]  # where in the request, e.g. ("HyperParameters", "lr")
    value: Any
    allowed: str


@cache
def operation_input(operation: str) -> StructureShape:
    """The input shape of one SageMaker operation (botocore's bundled model)."""
    return contract.service_model().operation_model(operation).input_shape


@cache
def _compiled(pattern: str):  # -> re.Pattern | regex.Pattern | None
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:  # Unicode classes (\p{L}, \p{Alnum} in tag patterns) need the regex package
        import regex

        return regex.compile(pattern)
    except Exception:  # a construct neither knows: the service checks it, we cannot
        return None


def violations(operation: str, request: dict[str, Any]) -> list[Violation]:
    """Every limit of the model that ``request`` breaks, in request order."""
    return list(_walk(request, operation_input(operation), ()))


def _walk(value: Any, shape: Shape, path: tuple) -> Iterator[Violation]:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                yield from _walk(member, shape.members[name], (*path, name))
    elif isinstance(shape, ListShape) and isinstance(value, list):
        yield from _size(value, shape, path, "items")
        for i, item in enumerate(value):
            yield from _walk(item, shape.member, (*path, i))
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        yield from _size(value, shape, path, "entries")
        for key, item in value.items():
            yield from _scalar(key, shape.key, (*path, key), "key")
            yield from _walk(item, shape.value, (*path, key))
    else:
        yield from _scalar(value, shape, path, "value")


def _size(value: Any, shape: Shape, path: tuple, unit: str) -> Iterator[Violation]:
    meta = shape.metadata
    if "max" in meta and len(value) > meta["max"]:
        yield Violation(path, f"{len(value)} {unit}", f"at most {meta['max']} {unit}")
    if "min" in meta and len(value) < meta["min"]:
        yield Violation(path, f"{len(value)} {unit}", f"at least {meta['min']} {unit}")


def _scalar(value: Any, shape: Shape, path: tuple, what: str) -> Iterator[Violation]:
    meta = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        yield from _string(value, shape, path, what)
    elif shape.type_name in ("integer", "long", "float", "double") and _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            yield Violation(path, value, "a finite number (JSON has no NaN or infinity)")
            return
        if "max" in meta and value > meta["max"]:
            yield Violation(path, value, f"at most {meta['max']}")
        if "min" in meta and value < meta["min"]:
            yield Violation(path, value, f"at least {meta['min']}")


def _string(value: str, shape: Shape, path: tuple, what: str) -> Iterator[Violation]:
    meta = shape.metadata
    if "max" in meta and len(value) > meta["max"]:
        yield Violation(path, value, f"a {what} of at most {meta['max']} characters")
    elif "min" in meta and len(value) < meta["min"]:
        yield Violation(path, value, f"a {what} of at least {meta['min']} characters")
    if shape.enum and value not in shape.enum:
        yield Violation(path, value, _enum_text(value, shape.enum))
    pattern = meta.get("pattern")
    compiled = _compiled(pattern) if pattern else None
    # The model's patterns match the whole value (as the service applies them).
    if compiled is not None and not compiled.fullmatch(value):
        yield Violation(path, value, f"must match {pattern}")


def _enum_text(value: str, enum: list[str]) -> str:
    if len(enum) <= 8:
        return "one of " + ", ".join(enum)
    near = difflib.get_close_matches(value, enum, n=3, cutoff=0.6) or sorted(enum)[:3]
    return f"one of the {len(enum)} values in botocore's model, e.g. " + ", ".join(near)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check(operation: str, request: dict[str, Any], *, job_name_field: str | None = None) -> None:
    """Raise ConfigError for the first limit the request breaks, naming the spec field."""
    found = violations(operation, request)
    if not found:
        return
    v = found[0]
    field = spec_field(v.path, request, job_name_field)
    where = ".".join(str(p) for p in v.path)
    raise ConfigError(field, v.value, f"{v.allowed} ({operation} {where})")


# Request member -> spec field, for messages. Nested paths are matched by their prefix.
_FIELDS = {
    ("TrainingJobName",): "name",
    ("HyperParameterTuningJobName",): "tuning.job_name",
    ("RoleArn",): "role",
    ("AlgorithmSpecification", "TrainingImage"): "image_uri",
    ("ResourceConfig", "InstanceType"): "instance.type",
    ("ResourceConfig", "InstanceCount"): "instance.count",
    ("ResourceConfig", "VolumeSizeInGB"): "instance.volume_size_gb",
    ("ResourceConfig", "KeepAlivePeriodInSeconds"): "warm_pool.keep_alive_seconds",
    ("HyperParameterTuningResourceConfig", "InstanceType"): "instance.type",
    ("HyperParameterTuningResourceConfig", "InstanceCount"): "instance.count",
    ("HyperParameterTuningResourceConfig", "VolumeSizeInGB"): "instance.volume_size_gb",
    ("OutputDataConfig",): "output_path",
    ("CheckpointConfig", "S3Uri"): "checkpoint.s3_uri",
    ("CheckpointConfig", "LocalPath"): "checkpoint.local_path",
    ("StoppingCondition", "MaxRuntimeInSeconds"): "max_run_seconds",
    ("StoppingCondition", "MaxWaitTimeInSeconds"): "spot.max_wait_seconds",
    ("RetryStrategy",): "max_retry_attempts",
    ("TensorBoardOutputConfig",): "tensorboard",
    ("DebugRuleConfigurations",): "rules",
    ("WarmStartConfig",): "tuning.warm_start",
    ("HyperParameterTuningJobConfig", "HyperParameterTuningJobObjective"): "tuning.objective",
    ("HyperParameterTuningJobConfig", "ResourceLimits", "MaxNumberOfTrainingJobs"): (
        "tuning.max_jobs"
    ),
    ("HyperParameterTuningJobConfig", "ResourceLimits", "MaxParallelTrainingJobs"): (
        "tuning.max_parallel_jobs"
    ),
    ("HyperParameterTuningJobConfig", "ResourceLimits", "MaxRuntimeInSeconds"): (
        "tuning.max_runtime_seconds"
    ),
    ("HyperParameterTuningJobConfig", "TuningJobCompletionCriteria"): "tuning.completion",
    ("HyperParameterTuningJobConfig", "StrategyConfig"): "tuning.hyperband",
    ("HyperParameterTuningJobConfig", "RandomSeed"): "tuning.random_seed",
}
_KEYED = {  # maps whose key is the spec's own key
    "HyperParameters": "hyperparameters",
    "StaticHyperParameters": "hyperparameters",
    "Environment": "environment",
}


def spec_field(path: tuple, request: dict[str, Any], job_name_field: str | None = None) -> str:
    """The spec field a request path comes from (the request path if none fits)."""
    if path and path[0] == "TrainingJobDefinition":
        return spec_field(path[1:], request["TrainingJobDefinition"], job_name_field)
    if path[:1] in (("TrainingJobName",), ("HyperParameterTuningJobName",)) and job_name_field:
        return job_name_field
    if path and path[0] in _KEYED:
        return _KEYED[path[0]] + (f".{path[1]}" if len(path) > 1 else "")
    if path and path[0] == "Tags":
        return "tags" if len(path) < 2 else f"tags.{request['Tags'][path[1]].get('Key', '')}"
    if path and path[0] == "InputDataConfig" and len(path) > 1:
        return f"inputs.{request['InputDataConfig'][path[1]].get('ChannelName', path[1])}"
    if len(path) > 2 and path[:2] == ("AlgorithmSpecification", "MetricDefinitions"):
        return f"metrics[{path[2]}]" + (f".{str(path[3]).lower()}" if len(path) > 3 else "")
    if len(path) > 3 and path[1] == "ParameterRanges":
        ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"][path[2]]
        return f"tuning.ranges.{ranges[path[3]].get('Name', path[3])}"
    for n in range(len(path), 0, -1):
        if path[:n] in _FIELDS:
            return _FIELDS[path[:n]]
    return "request." + ".".join(str(p) for p in path)
