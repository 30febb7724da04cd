"""The training image run the way SageMaker runs it: `docker run IMAGE train` on a fake /opt/ml."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


def fake_opt_ml(root: Path, hyperparameters: dict[str, object], script: str) -> Path:
    """A /opt/ml as the platform lays it out: config JSONs (hyperparameter values JSON-encoded
    strings, like the SDK sends them), an empty channel, the script in code/."""
    for sub in ("input/config", "input/data/train", "model", "output/data", "code"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    hps = {"sagemaker_program": script, "sagemaker_submit_directory": "/opt/ml/code"}
    hps.update(hyperparameters)
    config = root / "input" / "config"
    (config / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hps.items()})
    )
    resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"TrainingInputMode": "File"}})
    )
    shutil.copy(SCRIPTS_DIR / script, root / "code" / script)
    return root


# --network none, as SageMaker's own isolation would; "algo-1" (the host in resourceconfig)
# resolves to loopback, which the toolkit's DNS wait and torchrun's rendezvous both need.
ISOLATED = ["--network", "none", "--hostname", "algo-1", "--add-host", "algo-1:127.0.0.1"]


def docker_run(
    image: str, opt_ml: Path, *args: str, timeout: int = 180
) -> subprocess.CompletedProcess:
    name = f"sm-toolkit-test-{uuid.uuid4().hex[:12]}"
    cmd = ["docker", "run", "--rm", "--name", name, *ISOLATED, "-v", f"{opt_ml}:/opt/ml", image]
    try:
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    finally:  # a timeout kills the CLI, not the container
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_train_runs_a_script_mode_job(image: str, tmp_path: Path) -> None:
    opt_ml = fake_opt_ml(tmp_path, {"greeting": "hi there"}, "hello_train.py")
    done = docker_run(image, opt_ml, "train")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((opt_ml / "model" / "report.json").read_text())
    assert report["greeting"] == "hi there"  # a JSON-encoded string with a space, decoded once
    assert report["argv"] == ["--greeting", "hi there"]
    assert report["torch_version"] == "2.13.0+cpu"
    assert report["sm_toolkit"] == "/opt/sm-toolkit/site/sm_toolkit/__init__.py"
    assert (opt_ml / "output" / "success").exists()
    assert not (opt_ml / "output" / "failure").exists()


def test_failing_script_writes_its_error_to_the_failure_file(image: str, tmp_path: Path) -> None:
    opt_ml = fake_opt_ml(tmp_path, {"fail-with": "learning rate 7 is too high"}, "hello_train.py")
    done = docker_run(image, opt_ml, "train")
    assert done.returncode != 0
    failure = (opt_ml / "output" / "failure").read_text()
    # sagemaker-training's own format (it splits the exception line at the colon); scripts
    # using sm_toolkit.runtime write their one-line reason first instead.
    assert failure.startswith("ExecuteUserScriptError:\nExitCode 1\n")
    assert "ValueError" in failure[:1024] and "learning rate 7 is too high" in failure[:1024]
    assert not (opt_ml / "output" / "success").exists()


def test_torchrun_native_launcher_failure_is_not_reported_as_success(
    image: str, tmp_path: Path
) -> None:
    # sagemaker-training 5.1.4 alone reports SUCCESS here (swapped run() arguments).
    hps = {
        "fail-with": "boom under torchrun",
        "sagemaker_torch_distributed_enabled": True,
        "sagemaker_toolkit_native_launcher_enabled": True,
    }
    opt_ml = fake_opt_ml(tmp_path, hps, "hello_train.py")
    done = docker_run(image, opt_ml, "train")
    assert "torchrun" in done.stdout + done.stderr
    assert done.returncode != 0
    assert not (opt_ml / "output" / "success").exists()
    assert "ExitCode 1" in (opt_ml / "output" / "failure").read_text()


def test_sigterm_reaches_the_script_and_train_still_reports(image: str, tmp_path: Path) -> None:
    opt_ml = fake_opt_ml(tmp_path, {}, "sigterm_train.py")
    name = f"sm-toolkit-sigterm-{tmp_path.name[-12:]}"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-e",
            "SM_STUDIO_LOCAL_MODE=true",
            "-v",
            f"{opt_ml}:/opt/ml",
            image,
            "train",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (opt_ml / "model" / "ready").exists():
            assert time.monotonic() < deadline, "script never started"
            time.sleep(0.5)
        subprocess.run(["docker", "stop", "-t", "60", name], check=True, capture_output=True)
        rc = subprocess.run(["docker", "wait", name], capture_output=True, text=True).stdout.strip()
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    output = logs.stdout + logs.stderr
    assert "got SIGTERM, saving checkpoint" in output  # printed after the signal, still drained
    assert (opt_ml / "model" / "saved_on_sigterm").read_text() == "[15]"
    assert rc == "0"
    assert (opt_ml / "output" / "success").exists()  # train itself survived to report


def test_baked_entrypoint_runs_by_name(image: str) -> None:
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "train_cnn.py", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--epochs" in done.stdout


def test_push_dry_run_prints_ecr_commands() -> None:
    done = subprocess.run(
        [
            "make",
            "-s",
            "-f",
            "container/container.mk",
            "push",
            "DRY_RUN=1",
            "IMAGE=sm-toolkit:1.2",
            "AWS_ACCOUNT_ID=123456789012",
            "AWS_REGION=eu-west-1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    lines = done.stdout.strip().splitlines()
    assert lines[1] == (
        "aws ecr get-login-password --region eu-west-1 | "
        f"docker login --username AWS --password-stdin {registry}"
    )
    assert lines[2] == f"docker tag sm-toolkit:1.2 {registry}/sm-toolkit:1.2"
    assert lines[3] == f"docker push {registry}/sm-toolkit:1.2"
    assert "create-repository" in lines[0]


def test_push_without_a_tag_pushes_latest() -> None:
    done = subprocess.run(
        [
            "make",
            "-s",
            "-f",
            "container/container.mk",
            "push",
            "DRY_RUN=1",
            "IMAGE=sm-toolkit",
            "AWS_ACCOUNT_ID=123456789012",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip().splitlines()[-1] == (
        "docker push 123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-toolkit:latest"
    )
