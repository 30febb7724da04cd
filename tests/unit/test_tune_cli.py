"""`sm-toolkit tune` as a user types it: the refusals that come before any trial runs.

Tried: --resume without --local, --resume of a job that never started, a --job-name too long
for a tuning job."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "tune-rnn-grid.yaml"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sm_toolkit.cli", "tune", str(SPEC), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_resume_needs_local(tmp_path):
    proc = _cli("--resume", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "sm-toolkit: error: --resume: True is not allowed; only with --local (a local tuning job)"
    )


def test_resume_of_a_job_that_never_ran_names_the_missing_study(tmp_path):
    proc = _cli("--local", "--resume", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sm-toolkit: error: --resume: 'rnn-grid-001'")
    assert last.endswith("no .sm-toolkit/tuning/rnn-grid-001/study.db")
    assert not (tmp_path / ".sm-toolkit").exists()  # a refused resume leaves nothing behind


def test_a_tuning_job_name_past_32_characters_is_refused(tmp_path):
    proc = _cli("--local", "--job-name", "x" * 33, cwd=tmp_path)
    assert proc.returncode == 2 and "--job-name" in proc.stderr and "Traceback" not in proc.stderr


def test_job_name_names_the_tuning_job(tmp_path):
    proc = _cli("--local", "--resume", "--job-name", "my-tune-2", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sm-toolkit: error: --resume: 'my-tune-2'"), last
