"""The image's launcher and train shim as plain Python (no Docker needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sm_toolkit.runtime import launcher, train_entry


def test_train_goes_through_the_shim(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    command, is_train = launcher.build_command(["train"])
    assert is_train and command == [sys.executable, "-m", "sm_toolkit.runtime.train_entry"]
    assert launcher.build_command([])[1] is True


def test_baked_entrypoint_by_name_and_other_commands(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "train_cnn.py").write_text("")
    monkeypatch.setattr(launcher, "ENTRYPOINTS_DIR", tmp_path)
    assert launcher.build_command(["train_cnn", "--epochs", "1"]) == (
        [sys.executable, str(tmp_path / "train_cnn.py"), "--epochs", "1"],
        False,
    )
    assert launcher.build_command(["bash", "-c", "true"]) == (["bash", "-c", "true"], False)


def write_hps(base: Path, hps: dict) -> None:
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hps.items()})
    )


def test_baked_code_is_staged_only_when_the_job_sends_none(monkeypatch, tmp_path: Path) -> None:
    baked = tmp_path / "baked"
    baked.mkdir()
    (baked / "train_cnn.py").write_text("print('baked')")
    monkeypatch.setattr(launcher, "ENTRYPOINTS_DIR", baked)
    monkeypatch.delenv("SAGEMAKER_PROGRAM", raising=False)
    base = tmp_path / "ml"
    write_hps(base, {"sagemaker_program": "train_cnn.py", "epochs": 1})
    launcher.stage_baked_code(base)
    assert (base / "code" / "train_cnn.py").read_text() == "print('baked')"

    sent = tmp_path / "ml2"
    write_hps(sent, {"sagemaker_program": "train_cnn.py", "sagemaker_submit_directory": "s3://b/k"})
    launcher.stage_baked_code(sent)
    assert not (sent / "code").exists()


def test_children_of_finds_direct_children_only() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time;"
            "c=subprocess.Popen([sys.executable,'-c','import time;time.sleep(30)']);"
            "print(c.pid,flush=True);time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        assert launcher.children_of(parent.pid) == [child]
        assert launcher.children_of(os.getpid()) == [parent.pid]
    finally:
        os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_forwarder_signals_trains_children_not_train(tmp_path: Path) -> None:
    # A stand-in for `train` (dies on SIGTERM, like the real one) that reports the exit status
    # of its child, a script that handles SIGTERM by exiting 7.
    script = tmp_path / "script.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print(1, flush=True)\n"
        "time.sleep(60)\n"
    )
    fake_train = tmp_path / "fake_train.py"
    fake_train.write_text(
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, {str(script)!r}], stdout=subprocess.PIPE)\n"
        "child.stdout.readline(); print('ready', flush=True)\n"
        "print('child rc', child.wait(), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(fake_train)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        launcher.SignalForwarder(proc, is_train=True)(signal.SIGTERM, None)
        assert proc.stdout.readline().strip() == "child rc 7"  # train lived to see it
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_launcher_exit_code_reports_a_signal_death() -> None:
    saved = {sig: signal.getsignal(sig) for sig in launcher.FORWARDED}
    start = time.monotonic()
    try:
        rc = launcher.main(["sh", "-c", "kill -KILL $$"])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert rc == 128 + signal.SIGKILL
    assert time.monotonic() - start < 10


def test_swapped_run_arguments_are_fixed_only_when_swapped() -> None:
    calls = []

    class Swapped:
        def run(self, capture_error=True, wait=True):
            calls.append((capture_error, wait))

    class Fine:
        def run(self, wait=True, capture_error=False):
            calls.append((capture_error, wait))

    assert train_entry.fix_swapped_run_arguments(Swapped) is True
    Swapped().run(True, False)  # entry_point.run passes (wait, capture_error) positionally
    assert calls == [(False, True)]
    original = Fine.run
    assert train_entry.fix_swapped_run_arguments(Fine) is False
    assert Fine.run is original


def test_installed_torch_distributed_runner_still_needs_the_fix() -> None:
    # If this fails, sagemaker-training fixed the order upstream and the shim is a no-op.
    from sagemaker_training.torch_distributed import TorchDistributedRunner

    class Copy(TorchDistributedRunner):
        run = TorchDistributedRunner.run

    assert train_entry.fix_swapped_run_arguments(Copy) is True


# A stand-in for `train`: runs a script with its output on a pipe and reads that pipe until
# EOF, as sagemaker-training does. The script leaves a daemon (double fork, new session)
# that holds the pipe open for 60 s, then exits.
TRAIN_LIKE = """
import subprocess, sys
script = '''
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
print("script done", flush=True)
'''
proc = subprocess.Popen([sys.executable, "-c", script, sys.argv[1]], stdout=subprocess.PIPE)
for line in proc.stdout:
    pass
sys.exit(proc.wait())
"""


def test_a_daemon_the_script_left_does_not_hold_train_open(tmp_path: Path) -> None:
    token = "test-token"
    pid_file = tmp_path / "daemon.pid"
    child = subprocess.Popen(
        [sys.executable, "-c", TRAIN_LIKE, str(pid_file)],
        env={**os.environ, launcher.TOKEN_ENV: token},
        start_new_session=True,
    )
    began = time.monotonic()
    try:
        assert launcher.wait_for(child, token) == 0
        assert time.monotonic() - began < 15  # the daemon would hold it for 60 s
        daemon = int(pid_file.read_text())
        time.sleep(0.2)
        assert not Path(f"/proc/{daemon}").exists() or "Z" in Path(
            f"/proc/{daemon}/stat"
        ).read_text().rsplit(")", 1)[1].split()[0]
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.kill()
