"""botocore's SageMaker model as data: validate requests, shape responses.

Requests go through botocore's own ``ParamValidator`` (types, required members, unknown
members, minimums) and then through the constraints botocore leaves to the service (maximum
lengths and values, patterns, enums), read from the same model. Responses are cut to the
operation's output shape and their timestamps written as epoch seconds, as awsJson1_1 does.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator
from typing import Any

from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from sm_toolkit import contract
from sm_toolkit.endpoint.errors import UnknownOperation, ValidationError

# The one extension of the model: an S3 URI may be a file:// path on this machine (a
# channel's S3DataSource.S3Uri, a checkpoint or output location), as in SDK local mode.
LOCAL_URI_SHAPES = frozenset({"S3Uri"})


def operation(name: str) -> OperationModel:
    """The model of one SageMaker operation; UnknownOperation if botocore has none."""
    if name not in contract.service_model().operation_names:
        raise UnknownOperation(f"Operation {name!r} is not a SageMaker operation")
    return contract.service_model().operation_model(name)


def validate_input(op_name: str, params: Any) -> None:
    """Refuse a request the service would refuse, naming the first field at fault."""
    op = operation(op_name)
    if not isinstance(params, dict):
        raise ValidationError("The request body must be a JSON object")
    report = ParamValidator().validate(params, op.input_shape)
    if report.has_errors():
        # botocore's report is several lines under a header; the first error names the field.
        lines = [ln.strip() for ln in report.generate_report().splitlines() if ln.strip()]
        raise ValidationError(lines[0])
    problems = list(service_constraint_errors(params, op.input_shape, ""))
    if problems:
        raise ValidationError(
            f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
            + "; ".join(problems)
        )


def _member_path(parent: str, name: str) -> str:
    # The service names fields in lower camel case, dotted: 'resourceConfig.instanceCount'.
    name = name[:1].lower() + name[1:]
    return f"{parent}.{name}" if parent else name


def service_constraint_errors(value: Any, shape: Shape, path: str = "") -> Iterator[str]:
    """What the service checks and botocore does not: max, enum, pattern (one line each)."""
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            if name in value:
                yield from service_constraint_errors(value[name], member, _member_path(path, name))
        return
    if kind == "list":
        yield from _too_many(value, shape, path)
        for i, item in enumerate(value):
            yield from service_constraint_errors(item, shape.member, f"{path}.{i + 1}.member")
        return
    if kind == "map":
        yield from _too_many(value, shape, path)
        for key, item in value.items():
            yield from service_constraint_errors(key, shape.key, f"{path}.key")
            yield from service_constraint_errors(item, shape.value, f"{path}.{key}")
        return
    if kind == "string":
        yield from _string_constraints(value, shape, path)
    elif kind in ("integer", "long", "float", "double"):
        limit = shape.metadata.get("max")
        if limit is not None and value > limit:
            yield _fail(value, path, f"Member must have value less than or equal to {limit}")


def _too_many(value: Any, shape: Shape, path: str) -> Iterator[str]:
    limit = shape.metadata.get("max")
    if limit is not None and len(value) > limit:
        yield _fail(value, path, f"Member must have length less than or equal to {limit}")


def _string_constraints(value: str, shape: Shape, path: str) -> Iterator[str]:
    limit = shape.metadata.get("max")
    if limit is not None and len(value) > limit:
        yield _fail(value, path, f"Member must have length less than or equal to {limit}")
    if shape.enum and value not in shape.enum:
        yield _fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
    if shape.name in LOCAL_URI_SHAPES and value.startswith("file://"):
        return  # local code and data, as SageMaker local mode takes them
    pattern = _compiled(shape.metadata.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        yield _fail(
            value,
            path,
            f"Member must satisfy regular expression pattern: {shape.metadata['pattern']}",
        )


@functools.cache
def _compiled(pattern: str | None) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        # The service matches the whole value (Java's matches()); DOTALL keeps free-text
        # members such as hyperparameter values with newlines valid under '.*'.
        return re.compile(pattern, re.DOTALL)
    except re.error:  # a Java-only construct: leave that member to the type checks
        return None


def _fail(value: Any, path: str, constraint: str) -> str:
    shown = value if isinstance(value, str | int | float) else "[...]"
    return f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"


def conform_output(op_name: str, document: dict[str, Any]) -> dict[str, Any]:
    """The operation's response: members of its output shape only, JSON-ready."""
    shape = operation(op_name).output_shape
    if shape is None:
        return {}
    return _conform(document, shape)


def _conform(value: Any, shape: Shape) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {
            name: _conform(value[name], member)
            for name, member in shape.members.items()
            if value.get(name) is not None
        }
    if kind == "list":
        return [_conform(item, shape.member) for item in value]
    if kind == "map":
        return {key: _conform(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return epoch_seconds(value)
    return value


def epoch_seconds(value: Any) -> float:
    """A timestamp as awsJson1_1 sends it: seconds since the epoch."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


def to_datetime(value: Any) -> dt.datetime:
    """A request's timestamp (epoch seconds or ISO text) as an aware datetime."""
    return dt.datetime.fromtimestamp(epoch_seconds(value), tz=dt.timezone.utc)
