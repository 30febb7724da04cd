"""A wheel install (not editable) carries its entrypoints and examples: built here, installed
with --no-deps into a fresh venv, it renders every example from an unrelated folder.

The fresh venv sees the test venv's third-party packages through a .pth line (so nothing is
downloaded); a .pth path does not run that folder's own .pth files, so the editable
sm_toolkit of the test venv stays out and the wheel's copy is the one imported.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
# Without PYTHONPATH: a checkout on it would win over the installed wheel.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(ROOT), "-w", str(tmp / "dist")],
        check=True, capture_output=True,
    )  # fmt: skip
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=CLEAN_ENV,
    ).stdout.strip()  # fmt: skip
    wheel = next((tmp / "dist").glob("sm_toolkit-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         "--force-reinstall", str(wheel)],
        check=True, capture_output=True, env=CLEAN_ENV,
    )  # fmt: skip
    # After the install: pip would otherwise see the test venv's editable sm-toolkit there.
    shared = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    shared.append(sysconfig.get_paths()["purelib"])
    (Path(purelib) / "shared-deps.pth").write_text("\n".join(dict.fromkeys(shared)) + "\n")
    return env_dir


# One process renders every example (each render in its own process would pay the SDK's
# import, seconds each); the console script itself runs once below.
RENDER_ALL = """
import contextlib, io, json, sys
import sm_toolkit.spec as s
from sm_toolkit.cli import main
out = {"module": s.__file__, "examples": {}}
for path in sorted(s.examples_dir().glob("*.yaml")):
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main(["render", str(path)])
    out["examples"][path.name] = [code, buf.getvalue(), err.getvalue()[-500:]]
print(json.dumps(out))
"""


def test_wheel_install_renders_every_example(wheel_venv, tmp_path):
    proc = subprocess.run(
        [wheel_venv / "bin" / "python", "-c", RENDER_ALL],
        cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["module"].startswith(str(wheel_venv)), (
        "the wheel's sm_toolkit, not the checkout's"
    )
    assert set(result["examples"]) == {p.name for p in (ROOT / "examples").glob("*.yaml")}
    for name, (code, out, err) in result["examples"].items():
        assert code == 0, (name, err)
        request = json.loads(out)
        assert request.get("TrainingJobName") or request.get("HyperParameterTuningJobName")


def test_wheel_console_script_renders_a_builtin_entrypoint(wheel_venv, tmp_path):
    example = next((wheel_venv / "lib").glob("python3*/site-packages/sm_toolkit/_examples"))
    proc = subprocess.run(
        [wheel_venv / "bin" / "sm-toolkit", "render", str(example / "cnn-local.yaml")],
        cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["HyperParameters"]["sagemaker_program"] == '"train_cnn.py"'
