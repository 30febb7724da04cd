"""--sdk: the generation installed is the default; the other one, or none, is one line.

Runs in both suites (`make test` with v2, `make test-v3` with v3), so each side checks its
own default and the refusal of the other.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from sm_toolkit.aws import generation
from sm_toolkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HERE = "v" + version("sagemaker").split(".")[0]
OTHER = {"v2": "v3", "v3": "v2"}[HERE]


def test_default_is_the_installed_generation():
    assert generation.installed() == HERE
    assert generation.resolve(None) == HERE
    assert generation.resolve(HERE) == HERE


def test_the_other_generation_is_refused_with_the_way_out():
    with pytest.raises(ConfigError) as info:
        generation.resolve(OTHER)
    assert info.value.field == "--sdk"
    assert f"sm-toolkit[sdk-{OTHER}]" in str(info.value)


def test_an_unknown_generation_is_refused():
    with pytest.raises(ConfigError, match="v2 or v3"):
        generation.resolve("v4")


def test_no_sdk_installed_is_one_line():
    # The CLI as typed, in a process whose package metadata has no `sagemaker` distribution
    # (a third venv with neither SDK would need sm-toolkit's whole dependency set again).
    script = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "def version(name):\n"
        "    if name == 'sagemaker': raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.version = version\n"
        "from sm_toolkit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = [sys.executable, "-c", script, "render", str(ROOT / "examples" / "cnn-local.yaml")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sm-toolkit: error: no SageMaker Python SDK is installed; pip ")
    assert "sm-toolkit[sdk-v2]" in lines[0] and "sm-toolkit[sdk-v3]" in lines[0]


def _validate(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sm_toolkit.cli", "validate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_validate_checks_a_spec_for_either_generation_without_it_installed():
    smddp = str(ROOT / "examples" / "moe-smddp.yaml")
    v2 = _validate(smddp, "--sdk", "v2")
    assert v2.returncode == 0, v2.stderr
    assert v2.stdout.strip().endswith("(training job moe-lm-smddp, SDK v2)")
    v3 = _validate(smddp, "--sdk", "v3")
    assert v3.returncode == 2
    last = v3.stderr.strip().splitlines()[-1]
    assert last.startswith("sm-toolkit: error: distribution.type: 'smddp' is not allowed; SDK v3")
