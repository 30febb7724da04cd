"""optuna-dashboard, started as the README says (on 127.0.0.1), opens a local tuning job's
study and sees its trials."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sm_toolkit.local.tuning import run_local_tuning
from sm_toolkit.local.tuning.study_store import storage_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import FakeRunner, make_request  # noqa: E402

pytestmark = pytest.mark.integration
DASHBOARD = shutil.which("optuna-dashboard") or str(
    Path(sys.executable).with_name("optuna-dashboard")
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not Path(DASHBOARD).exists(), reason="pip install 'sm-toolkit[dashboard]'")
def test_optuna_dashboard_lists_the_study_and_its_trials(tmp_path):
    result = run_local_tuning(
        make_request(max_jobs=4), workdir=tmp_path, run_job=FakeRunner(), log=lambda line: None
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            DASHBOARD,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
            storage_url(result.output_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        (study,) = studies
        assert study["study_name"] == "quad"
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
        attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in detail["trials"]]
        names = sorted(a["training_job_name"] for a in attrs)
        assert names == sorted(t.name for t in result.trials)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _get_json(url: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
