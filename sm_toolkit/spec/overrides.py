"""Command-line values that change a loaded spec (``--job-name``, ``--set KEY=VALUE``).

They pass the same checks as the file: a job name the API's pattern, a hyperparameter the
spec's name and value rules (``sagemaker_*`` reserved, no spaces, finite numbers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.spec import rules, yaml_io
from sm_toolkit.spec.job import JOB_NAME_PATTERN, JobSpec
from sm_toolkit.spec.tuning import TUNING_NAME_PATTERN

MAX_VALUE_CHARS = 2500  # HyperParameterValue's maximum length in botocore's model


def check_job_name(name: str, *, tuning: bool, field: str = "--job-name") -> str:
    """``name`` if it is a valid training (or tuning) job name, else a ConfigError."""
    if tuning and not re.fullmatch(TUNING_NAME_PATTERN, name):
        raise ConfigError(field, name, "at most 32 letters, digits and hyphens (a tuning job name)")
    if not re.fullmatch(JOB_NAME_PATTERN, name):
        raise ConfigError(
            field, name, "1-63 letters, digits and hyphens, starting with a letter or digit"
        )
    return name


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings -> {key: value}, each key and value checked like the file's."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--set", pair, "KEY=VALUE, e.g. --set epochs=3")
        field = f"--set {key}"
        if len(value) > MAX_VALUE_CHARS:
            raise ConfigError(field, value, f"a value of at most {MAX_VALUE_CHARS} characters")
        rules.check_hyperparameter(key, _scalar(value, field), field)
        out[key] = value
    return out


# ``--set SECTION.FIELD=VALUE`` changes a field of these spec sections instead of a
# hyperparameter (e.g. a smaller world for a local run of an SMP spec).
SPEC_SECTIONS = ("distribution", "instance")


def apply_overrides(spec: JobSpec, pairs: list[str]) -> JobSpec:
    """The spec with ``--set`` hyperparameters merged in (values read as YAML scalars, as
    in the file), ``--set distribution.X=V`` / ``instance.X=V`` set on those sections, and
    every spec rule checked again."""
    if not pairs:
        return spec
    fields = [p for p in pairs if p.partition(".")[0] in SPEC_SECTIONS and "=" in p]
    hps = [p for p in pairs if p not in fields]
    values = {k: _scalar(v, f"--set {k}") for k, v in parse_overrides(hps).items()}
    data = spec.model_dump(exclude_unset=True)
    data["hyperparameters"] = {**spec.hyperparameters, **values}
    for pair in fields:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if not name or "." in name:
            raise ConfigError(f"--set {key}", value, f"{section}.FIELD=VALUE, one field deep")
        current = data.get(section) or getattr(spec, section).model_dump()
        data[section] = {**current, name: _scalar(value, f"--set {key}")}
    from sm_toolkit.spec.loader import validate_data

    return validate_data(data)


def apply_tracking_environment(spec: JobSpec, environ: Mapping[str, str]) -> JobSpec:
    """The spec with the user's MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME (their shell's,
    as MLflow itself reads them) as its ``tracking`` field, when the spec sets neither; the
    values pass the spec's own checks (named by the variable)."""
    keys = (contract.MLFLOW_TRACKING_URI_ENV, contract.MLFLOW_EXPERIMENT_ENV)
    if spec.tracking is not None or any(k in spec.environment for k in keys):
        return spec
    uri, experiment = (environ.get(k) or None for k in keys)
    if uri is None and experiment is None:
        return spec
    data = spec.model_dump(exclude_unset=True)
    data["tracking"] = {"uri": uri, "experiment": experiment}
    from sm_toolkit.spec.loader import validate_data

    try:
        return validate_data(data)
    except ConfigError as err:
        field = {"tracking.uri": keys[0], "tracking.experiment": keys[1]}.get(err.field)
        if field is None:
            raise
        raise ConfigError(f"${field}", err.value, err.allowed) from None


def _scalar(text: str, field: str) -> bool | int | float | str:
    try:
        value = yaml_io.load_yaml(text, field) if text else ""
    except ConfigError:
        return text
    if value is None or isinstance(value, list | dict):
        return text  # `--set x=[1,2]` reaches the script as the text the user typed
    return value
