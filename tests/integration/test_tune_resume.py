"""A local tuning job killed (SIGKILL) after two finished trials resumes from its optuna study
(SQLite in the job's folder) and runs only the remaining trials. The trials are the
in-process quadratic fake; the tuning job is a real process that is really killed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import run_local_tuning
from sm_toolkit.local.tuning.study_store import storage_url

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"
sys.path.insert(0, str(FIXTURES))
from quadratic_support import FakeRunner, job_dict, make_request  # noqa: E402

pytestmark = pytest.mark.integration
KW = dict(strategy="Bayesian", max_jobs=5, max_parallel_jobs=1, random_seed=4, epochs=3)

# The tuning job as its own process: one trial at a time, 3 epochs of 0.4 s each.
SCRIPT = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    sys.path.insert(0, {str(FIXTURES)!r})
    from quadratic_support import FakeRunner, make_request
    from sm_toolkit.local.tuning import run_local_tuning
    run_local_tuning(make_request(**{KW!r}), workdir=Path(sys.argv[1]),
                     run_job=FakeRunner(epoch_seconds=0.4),
                     log=lambda line: print(line, flush=True))
    """
)


def _kill_after_two_trials(workdir: Path, sig: signal.Signals) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    finished: list[str] = []
    try:
        for line in proc.stdout:
            if line.startswith("[tune] quad-") and " Completed " in line:
                finished.append(line.split()[1])
            if len(finished) == 2 and " started " in line:
                proc.send_signal(sig)  # two done, the third one running
                break
        proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    # SIGKILL: killed outright. SIGINT (Ctrl-C): the tuner stops the running trial and
    # re-raises, so Python ends with SIGINT's status (or 1 with the traceback).
    assert proc.returncode in (-sig, 1), f"the job ended with {proc.returncode}"
    return finished


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_killed_tuning_job_resumes_with_only_the_remaining_trials(tmp_path, sig):
    finished = _kill_after_two_trials(tmp_path, sig)
    out = tmp_path / "tuning" / "quad"
    assert not (out / "results.json").exists()  # it never got to the end
    study = optuna.load_study(study_name="quad", storage=storage_url(out))
    states = [t.state.name for t in study.trials]
    # Killed: the third trial stays RUNNING; Ctrl-C: it was stopped and marked FAIL.
    assert states == ["COMPLETE", "COMPLETE", "RUNNING" if sig == signal.SIGKILL else "FAIL"]

    runner, lines = FakeRunner(), []
    result = run_local_tuning(
        make_request(**KW), workdir=tmp_path, run_job=runner, log=lines.append, resume=True
    )
    assert len(runner.calls) == 3  # 5 trials, 2 finished before the kill
    assert len(result.trials) == 5 and [t.name for t in result.trials[:2]] == finished
    assert all(t.status == "Completed" for t in result.trials)
    assert any("resuming, 2 trials finished, 1 interrupted" in line for line in lines)
    # The interrupted trial's index is not reused: SageMaker never reuses a trial name.
    indices = [int(t.name.split("-")[1]) for t in result.trials]
    assert indices == [1, 2, 4, 5, 6]
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["trials"]) == 5 and doc["best_trial"] == result.best.name
    # The study now holds the 5 finished trials and the interrupted one, marked FAIL.
    states = sorted(
        t.state.name for t in optuna.load_study(study_name="quad", storage=storage_url(out)).trials
    )
    assert states == ["COMPLETE"] * 5 + ["FAIL"]

    # Resuming a finished job runs nothing more.
    again = FakeRunner()
    run_local_tuning(
        make_request(**KW), workdir=tmp_path, run_job=again, log=lines.append, resume=True
    )
    assert again.calls == []


def test_resume_needs_a_started_job_with_the_same_search(tmp_path):
    with pytest.raises(ConfigError, match=r"^--resume: 'quad'.*no .*study\.db"):
        run_local_tuning(
            make_request(**KW),
            workdir=tmp_path,
            run_job=FakeRunner(),
            log=lambda line: None,
            resume=True,
        )
    run_local_tuning(
        make_request(**KW), workdir=tmp_path, run_job=FakeRunner(), log=lambda line: None
    )
    changed = {**KW, "max_jobs": 8}
    with pytest.raises(ConfigError, match=r"^--resume: 'quad'.*the same HyperParameterTuning"):
        run_local_tuning(
            make_request(**changed),
            workdir=tmp_path,
            run_job=FakeRunner(),
            log=lambda line: None,
            resume=True,
        )


@pytest.mark.slow
def test_ctrl_c_then_tune_resume_from_the_cli_with_the_real_engine(tmp_path, bucket):
    # As a user does it: `sm-toolkit tune SPEC --local`, Ctrl-C once two trials finished,
    # then the same command with --resume. Every trial is a real local training job.
    job = job_dict(epochs=2, sleep=0.3, max_jobs=4, max_parallel_jobs=1, random_seed=3)
    job.update(output_path=f"s3://{bucket}/output")
    spec_path = tmp_path / "quad.yaml"
    spec_path.write_text(yaml.safe_dump(job))
    command = [sys.executable, "-m", "sm_toolkit.cli", "tune", str(spec_path), "--local"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    finished = []
    for line in proc.stdout:
        if line.startswith("[tune] quad-") and " Completed " in line:
            finished.append(line.split()[1])
        if len(finished) == 2 and " started " in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) != 0
    resumed = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    shown = resumed.stdout[-3000:]
    assert "resuming, 2 trials finished, 1 interrupted" in resumed.stdout, shown
    assert resumed.stdout.count(" started ") == 2, shown  # only the remaining two ran
    doc = json.loads((tmp_path / ".sm-toolkit" / "tuning" / "quad" / "results.json").read_text())
    assert [t["name"] for t in doc["trials"][:2]] == finished and len(doc["trials"]) == 4
    assert all(t["status"] == "Completed" for t in doc["trials"]), shown
    # MLflow: the resume continued the same parent run; each finished trial has exactly one
    # child run, and the trial the Ctrl-C stopped (run again under a new name) is marked
    # Interrupted if it had started (the Ctrl-C may land before its job began).
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/.sm-toolkit/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("sm-toolkit").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    status = {r.info.run_name: r.data.tags.get("sm-toolkit.trial_status") for r in children}
    assert list(status.values()).count("Interrupted") == len(children) - 4 <= 1, status
    kept = sorted(name for name, s in status.items() if s != "Interrupted")
    assert kept == sorted(t["name"] for t in doc["trials"]), status  # one run each
    assert all(s == "Completed" for name, s in status.items() if name in kept), status
