"""Job names: how long the API lets them be (botocore's service model, as data), and the
names sm-toolkit makes from a base: a timestamped name, the way the SDK's base_job_name
makes one, and a replay's name."""

from __future__ import annotations

import datetime as dt
import secrets

from sm_toolkit.aws.limits import operation_input

_NAME_MEMBERS = {
    False: ("CreateTrainingJob", "TrainingJobName"),
    True: ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
}


def max_length(*, tuning: bool) -> int:
    """The longest training (63) or tuning (32) job name, read from the service model."""
    operation, member = _NAME_MEMBERS[tuning]
    return operation_input(operation).members[member].metadata["max"]


def _fit(base: str, suffix: str, *, tuning: bool) -> str:
    return f"{base[: max_length(tuning=tuning) - len(suffix)].rstrip('-')}{suffix}"


def unique_name(base: str, *, tuning: bool) -> str:
    """``base`` plus a timestamp, cut to the API's length (training: ``-%Y-%m-%d-%H-%M-%S-%f``
    to the millisecond, as the SDK does; tuning: ``-%y%m%d-%H%M%S`` and 3 random hex digits,
    so that two launches in one minute do not collide as the SDK's minute-resolution short
    names do)."""
    now = dt.datetime.now(dt.timezone.utc)
    if tuning:
        stamp = f"{now.strftime('%y%m%d-%H%M%S')}-{secrets.token_hex(2)[:3]}"
    else:
        stamp = now.strftime("%Y-%m-%d-%H-%M-%S-%f")[:-3]
    return _fit(base, f"-{stamp}", tuning=tuning)


def replay_name(original: str, now: dt.datetime | None = None) -> str:
    """A new, unique training job name that says where it came from:
    ``<original>-replay-<stamp>``."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d%H%M%S%f")[:-3]
    return _fit(original, f"-replay-{stamp}", tuning=False)
