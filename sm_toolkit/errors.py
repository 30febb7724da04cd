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
        field = elide(field, MAX_FIELD)
        if value is MISSING:
            head = f"{field}: missing; "
        else:
            head = f"{field}: {_shown(value)} is not allowed; "
        super().__init__(head + elide(allowed, MAX_LINE - len(head)))


# One error line stays under 300 characters with the CLI's "sm-toolkit: error: " prefix.
MAX_LINE, MAX_FIELD, MAX_VALUE = 278, 80, 60


def elide(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, the middle elided if longer."""
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= limit:
        return text
    mark = f"...({len(text)} chars)..."
    keep = max(limit - len(mark), 2)
    return text[: keep - keep // 3] + mark + text[len(text) - keep // 3 :]


def _shown(value: object) -> str:
    """A short repr: only the ends of a long string; a container by its size (the repr of
    a huge nested value would cost time and memory before it is elided)."""
    if isinstance(value, str | bytes) and len(value) > MAX_VALUE:
        mark = f"...({len(value)} chars)..."
        keep = (MAX_VALUE - len(mark)) // 2
        return repr(value[:keep])[:-1] + mark + repr(value[-keep:])[1:]
    if isinstance(value, dict | list | tuple | set) and len(value) > 3:
        return f"<{type(value).__name__} of {len(value)}>"
    return elide(repr(value), MAX_VALUE)


class JobFailedError(ToolkitError):
    """A training job (local or remote) ended in the Failed state."""

    exit_code = 1


class LocalRunError(ToolkitError):
    """The local runner could not prepare or run a job (not the user's script failing)."""

    exit_code = 1
