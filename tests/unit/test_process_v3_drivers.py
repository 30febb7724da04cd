"""The process backend points SDK v3's drivers at its own hosts: with several instances the
rendezvous that v3 fixes at algo-1:7777 becomes the first host's loopback address and the
job's port; drivers it cannot read that way are refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sm_toolkit import contract
from sm_toolkit.errors import ConfigError
from sm_toolkit.local.backends.process import _translate_drivers
from sm_toolkit.local.hosts import Host

# The two lines of v3's scripts/environment.py that matter here, and one that must not change.
ENVIRONMENT_PY = """import os
SM_MASTER_ADDR = "algo-1"
SM_MASTER_PORT = 7777
OTHER = "algo-1"
print(SM_MASTER_ADDR, SM_MASTER_PORT, OTHER)
"""


def hosts(tmp_path: Path, n: int) -> list[Host]:
    out = []
    for i in range(n):
        name = f"algo-{i + 1}"
        out.append(Host(name, f"127.0.0.{i + 1}", tmp_path / name, tmp_path / f"{name}.log"))
    return out


def drivers(host: Host, text: str) -> Path:
    folder = host.opt_ml / contract.INPUT_DATA_DIR / contract.V3_DRIVERS_CHANNEL / "scripts"
    folder.mkdir(parents=True)
    path = folder / "environment.py"
    path.write_text(text)
    return path


def test_two_hosts_rendezvous_at_the_first_host_and_the_jobs_port(tmp_path):
    group = hosts(tmp_path, 2)
    script = drivers(group[1], ENVIRONMENT_PY)
    _translate_drivers(group[1], lambda text: text, group)
    env = {**os.environ, contract.MASTER_PORT_ENV: "41234"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["127.0.0.1", "41234", "algo-1"]


def test_one_host_keeps_the_drivers_as_they_are(tmp_path):
    group = hosts(tmp_path, 1)
    script = drivers(group[0], ENVIRONMENT_PY)
    _translate_drivers(group[0], lambda text: text, group)
    assert script.read_text() == ENVIRONMENT_PY


def test_several_hosts_with_drivers_that_do_not_name_algo_1_are_refused(tmp_path):
    group = hosts(tmp_path, 2)
    drivers(group[0], 'SM_MASTER_ADDR = os.environ["X"]\n')
    with pytest.raises(ConfigError, match=r"InputDataConfig.sm_drivers: .*--backend docker"):
        _translate_drivers(group[0], lambda text: text, group)
