"""Load a job spec from YAML: parse once at the edge, then the rest sees a typed JobSpec.

Relative paths in the file (``source_dir``, local inputs) are relative to the file.
Every mistake becomes one ``ConfigError`` line: field path, value, what is allowed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sm_toolkit.errors import MISSING, ConfigError, LocalRunError
from sm_toolkit.spec import rules, yaml_io
from sm_toolkit.spec.job import PATTERN_HINTS, JobSpec
from sm_toolkit.spec.metrics import default_metric_definitions, entrypoint_catalog
from sm_toolkit.spec.tuning import TUNING_NAME_PATTERN

ENTRYPOINTS_ENV = "SM_TOOLKIT_ENTRYPOINTS_DIR"


def entrypoints_dir() -> Path:
    """Where the project's entrypoints live: the checkout's entrypoints/ folder, or in an
    installed wheel the copy it carries as ``sm_toolkit._entrypoints``."""
    override = os.environ.get(ENTRYPOINTS_ENV)
    if override:
        return Path(override)
    return _shipped("entrypoints", "sm_toolkit._entrypoints")


def examples_dir() -> Path:
    """The example specs: the checkout's examples/ folder, or the wheel's copy."""
    return _shipped("examples", "sm_toolkit._examples")


def _shipped(folder: str, package: str) -> Path:
    # pyproject maps the top-level folders into the wheel as these packages
    # ([tool.setuptools.package-dir]); a source checkout uses the folders themselves.
    checkout = Path(__file__).resolve().parents[2] / folder
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalRunError(f"sm-toolkit is installed without its {folder}/ ({package})")
    return Path(next(iter(spec.submodule_search_locations)))


def load_spec(path: str | Path) -> JobSpec:
    """Read, complete and validate a job spec file."""
    path = Path(path)
    raw = yaml_io.load_yaml(yaml_io.read_text(path), str(path))
    return parse_spec(raw, base_dir=path.resolve().parent)


def parse_spec(raw: Any, *, base_dir: Path) -> JobSpec:
    """Validate an already-parsed mapping (a loaded YAML document)."""
    if not isinstance(raw, dict):
        raise ConfigError("spec", type(raw).__name__, "a mapping of keys (see examples/)")
    return validate_data(_complete(dict(raw), base_dir))


def validate_data(data: dict[str, Any]) -> JobSpec:
    """A completed mapping -> a JobSpec that passed the models and the cross-field rules."""
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise _to_config_error(exc) from None
    except RecursionError:
        raise ConfigError("spec", "nesting", "a shallower document") from None
    rules.check(spec)
    return spec


def _complete(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Fill what the file may leave out: builtin source_dir, default metrics, paths."""
    entry = data.get("entry_point")
    if data.get("source_dir") is None and isinstance(entry, str):
        if entry not in entrypoint_catalog():
            raise ConfigError(
                "entry_point",
                entry,
                "one of the project's entrypoints ("
                + ", ".join(entrypoint_catalog())
                + ") or set source_dir",
            )
        data["source_dir"] = str(entrypoints_dir())
    elif isinstance(data.get("source_dir"), str):
        source = (base_dir / data["source_dir"]).resolve()
        if not source.is_dir():
            raise ConfigError("source_dir", data["source_dir"], "an existing directory")
        if isinstance(entry, str) and not (source / entry).is_file():
            raise ConfigError("entry_point", entry, f"a file inside source_dir ({source})")
        data["source_dir"] = str(source)
    if not data.get("metrics") and isinstance(entry, str):
        data["metrics"] = default_metric_definitions(entry)
    inputs = data.get("inputs")
    if isinstance(inputs, dict):
        data["inputs"] = {k: _resolve_input(k, v, base_dir) for k, v in inputs.items()}
    return data


def _resolve_input(channel: Any, value: Any, base_dir: Path) -> Any:
    """An S3 URI stays; a local path (or file:// URI) must exist and becomes absolute."""
    if not isinstance(value, str) or value.startswith("s3:"):
        return value
    field = f"inputs.{channel}"
    if "://" in value and not value.startswith("file://"):
        raise ConfigError(field, value, "an s3://bucket/prefix URI or a local path")
    local = value[len("file://") :] if value.startswith("file://") else value
    if not local or "\x00" in local:
        raise ConfigError(field, value, "an s3://bucket/prefix URI or a local path")
    path = (base_dir / local).resolve()
    if not path.exists():
        raise ConfigError(field, value, f"an existing local path ({path} does not exist)")
    return str(path)


def _to_config_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if loc and loc[-1] in _SCALAR_MEMBERS:  # no member of bool | int | float | str fits
        return ConfigError(
            _join(loc[:-1]), err.get("input"), "a single value: a string, a number or true/false"
        )
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        return ConfigError(_join(loc), loc[-1], "unknown key; allowed: " + allowed)
    if kind == "missing":
        return ConfigError(_join(loc), MISSING, "required (see examples/)")
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return ConfigError(_join(loc) + ".type", err.get("input"), _msg(err))
    # Discriminated unions put the tag in the path (distribution.mpi.x): keep it readable.
    return ConfigError(_join(loc), err.get("input"), _msg(err))


_SCALAR_MEMBERS = {"bool", "int", "float", "str"}


def _msg(err: dict) -> str:
    pattern = (err.get("ctx") or {}).get("pattern")
    if err["type"] == "string_pattern_mismatch" and pattern:
        if pattern == TUNING_NAME_PATTERN:
            return "at most 32 letters, digits and hyphens (a tuning job name)"
        return PATTERN_HINTS.get(pattern, f"must match {pattern}")
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else "see examples/"


def _join(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (("." if out else "") + part)
    return out


def _allowed_keys(loc: tuple) -> str:
    """The keys the model at ``loc`` accepts, for an 'unknown key' message."""
    model: Any = JobSpec
    for part in loc:
        model = _child_model(model, part)
        if model is None:
            return "see examples/"
    return ", ".join(model.model_fields)


def _child_model(model: Any, part: Any) -> Any:
    import typing

    if isinstance(model, type) and issubclass(model, BaseModel):
        field = model.model_fields.get(part)
        return _unwrap(field.annotation, None) if field else None
    if isinstance(model, dict):  # union variants keyed by their type tag
        return model.get(part)
    if typing.get_origin(model) is dict:
        return _unwrap(typing.get_args(model)[1], None)
    return None


def _unwrap(annotation: Any, _: Any) -> Any:
    """Optional[X] -> X; a union of models -> {tag: model}; dict[str, X] stays."""
    import types
    import typing

    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(args[0], None)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        return {
            m.model_fields["type"].annotation.__args__[0]: m
            for m in models
            if "type" in m.model_fields
        }
    return annotation
