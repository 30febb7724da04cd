"""The toolkit's error hierarchy.

A user's mistake ends in one line naming the field, the value and what is allowed
(`ConfigError`); the CLI turns any `ToolkitError` into that line and exit code 2.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class for every error the toolkit raises on purpose."""

    exit_code = 1


MISSING = object()  # the value of a required field that is absent


class ConfigError(ToolkitError):
    """A job spec, hyperparameter or command-line value is wrong. Exit code 2.

    The message is one line: the field path, the value, and what is allowed.
    """

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        if value is MISSING:
            super().__init__(f"{field}: missing; {allowed}")
        else:
            super().__init__(f"{field}: {value!r} is not allowed; {allowed}")


class JobFailedError(ToolkitError):
    """A training job (local or remote) ended in the Failed state."""

    exit_code = 1


class LocalRunError(ToolkitError):
    """The local runner could not prepare or run a job (not the user's script failing)."""

    exit_code = 1
