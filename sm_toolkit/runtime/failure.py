"""The container's top-level handler: user errors vs framework errors, and the failure file.

SageMaker shows the first 1,024 characters of <base>/output/failure as the job's
FailureReason, so the useful line goes first. A file that already exists is left alone
(the first writer knows the cause best; sagemaker-training follows the same rule).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from sm_toolkit.errors import ConfigError, ToolkitError

FAILURE_REASON_CHARS = 1024


def write_failure(path: Path, message: str) -> bool:
    """Write `message` to the failure file unless one exists. Returns True if written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as fh:
            fh.write(message)
    except FileExistsError:
        return False
    except OSError as err:  # a read-only output dir must not hide the real error
        print(f"[failure] could not write {path}: {err}", file=sys.stderr)
        return False
    return True


def failure_message(err: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception: one line for user errors, traceback otherwise."""
    if isinstance(err, ConfigError):
        return f"ConfigError: {err}", err.exit_code
    if isinstance(err, ToolkitError):
        return f"{type(err).__name__}: {err}", err.exit_code
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    # Cause first so it survives the 1,024-character cut; the traceback follows.
    return f"{type(err).__name__}: {err}\n\nFramework error traceback:\n{tb}", 1


def run_main(main: Callable[[], None], failure_file: Callable[[], Path]) -> int:
    """Run `main`, turn exceptions into a failure file and an exit code.

    `failure_file` is called only on failure, so a bad argument can still be reported
    before the runtime environment was fully read.
    """
    try:
        main()
    except SystemExit as err:  # argparse --help and friends
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        return code
    except KeyboardInterrupt:
        print("[failure] interrupted", file=sys.stderr)
        return 130
    except BaseException as err:  # noqa: BLE001 - the last line of defence
        message, code = failure_message(err)
        first_line = message.splitlines()[0]
        if code == 1 and not isinstance(err, ToolkitError):
            print(message, file=sys.stderr)
        else:
            print(f"[failure] {first_line}", file=sys.stderr)
        write_failure(failure_file(), message)
        return code
    return 0
