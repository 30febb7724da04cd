"""Tracking in the training image: it carries the MLflow client and the SageMaker ARN plugin;
its trainer, given only MLFLOW_TRACKING_URI as on SageMaker, starts and fills its own run;
and a docker-backend job is still one run in the work folder's store (logged by the engine,
since a store on this machine cannot be reached from the job's network)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from local_helpers import run_spec  # noqa: E402

from sm_toolkit.local import tracking  # noqa: E402
from sm_toolkit.spec import parse_spec  # noqa: E402
from sm_toolkit.train.datasets import write_digits_npz  # noqa: E402

mlflow = pytest.importorskip("mlflow")
ROOT = Path(__file__).resolve().parents[2]
HPS = {"size": "debug", "epochs": 2, "threads": 1}


def _python(image: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_image_has_the_mlflow_client_and_the_sagemaker_arn_plugin(image):
    done = _python(
        image,
        "import importlib.metadata as m, mlflow, sagemaker_mlflow; "
        "stores = {e.name for e in m.entry_points(group='mlflow.tracking_store')}; "
        "print(mlflow.__version__, m.version('mlflow-skinny'), 'arn' in stores)",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    version, skinny, arn = done.stdout.split()
    assert version == skinny and version.startswith("3.") and arn == "True"


def _sagemaker_like_opt_ml(root: Path) -> Path:
    """/opt/ml as SageMaker lays it out for the CNN entrypoint (script mode)."""
    for sub in ("input/config", "input/data/train", "model", "output/data", "code"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    hps = {"sagemaker_program": "train_cnn.py", "sagemaker_submit_directory": "/opt/ml/code"}
    hps.update(HPS)
    config = root / "input" / "config"
    (config / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hps.items()})
    )
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        )
    )
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"TrainingInputMode": "File"}})
    )
    shutil.copy(ROOT / "entrypoints" / "train_cnn.py", root / "code" / "train_cnn.py")
    write_digits_npz(root / "input" / "data" / "train")
    return root


def test_the_trainer_in_the_image_owns_its_run_as_on_sagemaker(image, tmp_path):
    """No MLFLOW_RUN_ID (SageMaker sets none): rank 0 starts the run named after the job and
    logs hyperparameters, every epoch's metrics with steps, plots, metrics.json and the
    model. The store is a folder under /opt/ml so that this machine can read it back."""
    opt_ml = _sagemaker_like_opt_ml(tmp_path / "opt_ml")
    name = f"smtk-tracking-{uuid.uuid4().hex[:8]}"
    env = {
        "MLFLOW_TRACKING_URI": "file:///opt/ml/output/data/mlruns",
        "MLFLOW_EXPERIMENT_NAME": "on-sagemaker",
        "MLFLOW_ALLOW_FILE_STORE": "true",  # MLflow 3 keeps its file store for opt-ins only
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TRAINING_JOB_NAME": "cnn-on-aws",
    }
    cmd = ["docker", "run", "--rm", "--name", name, "--network", "none", "--hostname", "algo-1"]
    cmd += ["--add-host", "algo-1:127.0.0.1", "-v", f"{opt_ml}:/opt/ml"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    try:
        done = subprocess.run([*cmd, image, "train"], capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = opt_ml / "output" / "data" / "mlruns"
    (meta,) = [p for p in store.glob("*/*/meta.yaml") if p.parent.name != "models"]
    run_dir = meta.parent
    assert "run_name: cnn-on-aws" in meta.read_text()
    params = {p.name: p.read_text() for p in (run_dir / "params").iterdir()}
    assert params == {"size": "debug", "epochs": "2", "threads": "1"}
    history = (run_dir / "metrics" / "val:loss").read_text().split("\n")
    assert [int(line.split()[2]) for line in history if line] == [1, 2]  # step = epoch
    tags = {p.name: p.read_text() for p in (run_dir / "tags").iterdir()}
    assert tags["sagemaker.training_job_name"] == "cnn-on-aws"
    assert tags["sm-toolkit.model_family"] == "cnn"
    artifacts = {p.relative_to(run_dir / "artifacts").as_posix() for p in run_dir.rglob("*.*")
                 if "artifacts" in p.parts}  # fmt: skip
    assert {"model/model.pt", "model/model_config.json", "output/metrics.json"} <= artifacts
    assert "output/loss_curves.png" in artifacts
    assert "status: 3" in meta.read_text()  # RunStatus.FINISHED


def test_a_docker_backend_job_is_one_run_in_the_work_folders_store(image, bucket, tmp_path):
    s3 = __import__("boto3").client("s3", region_name="us-east-1")
    data = write_digits_npz(tmp_path / "data")
    s3.upload_file(str(data), bucket, "data/digits/digits.npz")
    spec = parse_spec(
        {
            "name": "cnn-tracked",
            "entry_point": "train_cnn.py",
            "hyperparameters": HPS,
            "image_uri": "sm-toolkit:latest",
            "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
            "instance": {"type": "ml.c5.xlarge"},
            "inputs": {"train": f"s3://{bucket}/data/digits"},
            "output_path": f"s3://{bucket}/output",
        },
        base_dir=ROOT,
    )
    result = run_spec(
        spec, job_name="cnn-tracked-1", workdir=tmp_path, backend="docker", image=image
    )
    assert result.status == "Completed", result.failure_reason
    mlflow.set_tracking_uri(tracking.default_uri(tmp_path))
    try:
        (run,) = mlflow.search_runs(experiment_names=["sm-toolkit"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert run.info.run_name == "cnn-tracked-1" and run.info.status == "FINISHED"
    assert run.data.metrics == result.final_metrics
    assert run.data.params == {k: str(v) for k, v in HPS.items()}
    # The store is a file on this machine: the container was not told about it.
    assert "sm-toolkit.model_family" not in run.data.tags


HOST_SITE = Path(mlflow.__file__).resolve().parents[1]  # this venv's site-packages


@pytest.fixture
def mlflow_on_docker_network(image, tmp_path):
    """An MLflow server as a container of the project's image on an --internal Docker network
    this test creates (name `mlflow` there), with its SQLite store and artifacts in a folder
    of this machine. The image has only mlflow-skinny (no server), so the server side of
    this test venv's mlflow is mounted read-only beside it; nothing is published to a host
    port: the test reads the store from its folder."""
    tag = uuid.uuid4().hex[:8]
    network, server = f"smtk-test-mlflow-{tag}", f"smtk-test-mlflow-server-{tag}"
    root = tmp_path / "server"
    root.mkdir()
    subprocess.run(["docker", "network", "create", "--internal", network], check=True)
    try:
        subprocess.run(
            ["docker", "run", "-d", "--name", server, "--network", network]
            + ["--network-alias", "mlflow", "-v", f"{root}:/srv", "-v", f"{HOST_SITE}:/hostsite:ro"]
            + ["-e", "PYTHONPATH=/hostsite", "-e", "MLFLOW_DISABLE_TELEMETRY=true"]
            + ["--entrypoint", "python3", image, "-m", "mlflow"]
            + ["server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]
            + ["--backend-store-uri", "sqlite:////srv/db.sqlite"]
            + ["--artifacts-destination", "/srv/artifacts"]
            + ["--allowed-hosts", "mlflow:5000,mlflow,127.0.0.1:5000"],
            check=True,
            capture_output=True,
        )
        probe = "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=5)"
        for _ in range(120):
            done = subprocess.run(["docker", "exec", server, "python3", "-c", probe],
                                  capture_output=True)  # fmt: skip
            if done.returncode == 0:
                break
            time.sleep(1)
        else:
            logs = subprocess.run(["docker", "logs", server], capture_output=True, text=True)
            raise AssertionError("the MLflow server did not start: " + logs.stderr[-2000:])
        yield network, root
    finally:
        subprocess.run(["docker", "rm", "-f", server], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def test_a_docker_backend_job_logs_from_its_container_to_a_server_on_the_users_network(
    image, bucket, tmp_path, mlflow_on_docker_network
):
    """`run --local --backend docker --network N` with tracking.uri http://mlflow:5000: the
    name resolves only on N, so the engine leaves the run to the job, whose trainer starts and
    fills it from inside the container, through N, as it would on SageMaker."""
    import yaml

    network, server_root = mlflow_on_docker_network
    s3 = __import__("boto3").client("s3", region_name="us-east-1")
    s3.upload_file(str(write_digits_npz(tmp_path / "data")), bucket, "data/digits/digits.npz")
    spec = {
        "name": "cnn-docker-tracked",
        "entry_point": "train_cnn.py",
        "hyperparameters": HPS,
        "image_uri": image,
        "role": "arn:aws:iam::123456789012:role/SageMakerTrainingRole",
        "instance": {"type": "ml.c5.xlarge"},
        "inputs": {"train": f"s3://{bucket}/data/digits"},
        "output_path": f"s3://{bucket}/output",
        "tracking": {"uri": "http://mlflow:5000", "experiment": "docker-team"},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "sm_toolkit.cli", "run", str(path), "--local"]
    command += ["--backend", "docker", "--network", network, "--job-name", "cnn-docker-1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "mlflow does not resolve here" in done.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{server_root}/db.sqlite")
    experiment = client.get_experiment_by_name("docker-team")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "cnn-docker-1" and run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in HPS.items()}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val:loss")] == [1, 2]
    assert run.data.tags["sm-toolkit.model_family"] == "cnn"
    stored = {p.relative_to(server_root / "artifacts").as_posix()
              for p in (server_root / "artifacts").rglob("*") if p.is_file()}  # fmt: skip
    assert any(p.endswith("artifacts/model/model.pt") for p in stored), stored
    assert not (tmp_path / ".sm-toolkit" / "mlflow").exists()  # nothing in the local store
