"""Tracking in the training image: it carries the MLflow client and the SageMaker ARN plugin;
its trainer, given only MLFLOW_TRACKING_URI as on SageMaker, starts and fills its own run;
and a docker-backend job is still one run in the work folder's store (logged by the engine,
since a store on this machine cannot be reached from the job's network)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
