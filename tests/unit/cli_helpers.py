"""Run the CLI as a user would, in-process (fast) or through a real subprocess."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from sm_toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float

    def assert_one_line_refusal(self, *words: str) -> None:
        """Exit 2, nothing on stdout, one line of at most 300 characters on stderr."""
        lines = self.err.splitlines()
        assert self.code == 2, (self.code, self.err[-2000:])
        assert self.out == "", self.out[:500]
        errors = [line for line in lines if line.startswith("sm-toolkit: error: ")]
        assert len(errors) == 1 and all(
            line.startswith("sm-toolkit: note: ") for line in lines if line not in errors
        ), self.err[:2000]
        assert len(errors[0]) <= 300, len(errors[0])
        assert "Traceback" not in self.err
        for word in words:
            assert word in errors[0], errors[0]


def cli(*argv: str) -> Outcome:
    """``sm-toolkit ARGV`` through ``main()`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def cli_subprocess(*argv: str) -> Outcome:
    """``sm-toolkit ARGV`` as a real process (``python -m sm_toolkit.cli``)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", *argv], capture_output=True, text=True
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())


def write_spec(folder: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path
