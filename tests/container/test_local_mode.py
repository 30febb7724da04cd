"""SageMaker local mode (the SDK's docker compose path) end to end against the built image.

Offline: fake credentials, telemetry opted out, local code, file:// inputs and outputs, and the
compose network made internal, so the containers have no route off this machine.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from sagemaker.pytorch import PyTorch

from local_mode import LOCAL_NETWORK, bridge_forwarding_switch, run_job_docker
from sm_toolkit.train.datasets import write_digits_npz

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"  # a full ARN: no IAM lookup


def estimator_factory(
    image: str,
    entry_point: str,
    source_dir: Path,
    hyperparameters: dict,
    instance_count: int = 1,
    **kwargs,
):
    def make(session):
        return PyTorch(
            entry_point=entry_point,
            source_dir=str(source_dir),
            image_uri=image,
            role=ROLE,
            instance_type="local",
            instance_count=instance_count,
            hyperparameters=hyperparameters,
            sagemaker_session=session,
            **kwargs,
        )

    return make


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {
            m.name.lstrip("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
        }


def container_networks(name: str) -> set[str]:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out))


@pytest.mark.slow
def test_cnn_one_epoch_in_local_mode(image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_digits_npz(data)  # the train channel, staged by local mode from a file:// URI
    factory = estimator_factory(
        image,
        "train_cnn.py",
        REPO_ROOT / "entrypoints",
        {"epochs": 1, "size": "debug", "threads": 1},
    )
    result = run_job_docker(
        factory,
        job_name="cnn-local-1",
        workdir=tmp_path / "jobs",
        inputs={"train": f"file://{data}"},
    )
    print(f"local mode CNN job wall time: {result.seconds:.1f}s")
    assert result.status == "Completed", result.failure_reason
    model = members(result.model_artifacts)
    assert "model.pt" in model and "model_config.json" in model
    output = members(result.output_artifacts)
    assert "success" in output
    assert "data/metrics.json" in output


def test_job_runs_on_an_internal_network_only(image: str, tmp_path: Path) -> None:
    factory = estimator_factory(image, "hello_train.py", SCRIPTS_DIR, {"greeting": "offline"})
    result = run_job_docker(
        factory, job_name="hello-local-1", workdir=tmp_path / "jobs", keep_containers=True
    )
    try:
        networks = [container_networks(name) for name in result.containers]
    finally:
        subprocess.run(["docker", "rm", "-f", *result.containers], capture_output=True)
    assert result.status == "Completed", result.failure_reason
    report = json.loads(members(result.model_artifacts)["report.json"])
    assert report["greeting"] == "offline"
    assert report["current_host"].startswith("algo-1")
    # No traffic can leave: the job's containers joined only the compose network, which is
    # internal, and this host does not forward packets arriving from its bridge.
    inspect = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{.Internal}}", LOCAL_NETWORK],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inspect.stdout.strip() == "true"
    assert bridge_forwarding_switch().read_text().strip() == "0"
    assert len(networks) == 1 and networks[0] == {LOCAL_NETWORK}


@pytest.mark.slow
def test_two_containers_all_reduce_over_gloo(image: str, tmp_path: Path) -> None:
    # The SDK refuses torch_distributed on instance_type "local" unless image_uri is given.
    factory = estimator_factory(
        image,
        "allreduce.py",
        SCRIPTS_DIR,
        {},
        instance_count=2,
        distribution={"torch_distributed": {"enabled": True}},
    )
    result = run_job_docker(factory, job_name="allreduce-local-2", workdir=tmp_path / "jobs")
    assert result.status == "Completed", result.failure_reason
    model = members(result.model_artifacts)
    reports = [json.loads(model[f"rank{r}.json"]) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert [r["sum"] for r in reports] == [3.0, 3.0]
    assert reports[0]["host"] != reports[1]["host"]


def test_failing_script_reason_reaches_the_caller(image: str, tmp_path: Path) -> None:
    factory = estimator_factory(
        image, "hello_train.py", SCRIPTS_DIR, {"fail-with": "batch_size 0 must be positive"}
    )
    result = run_job_docker(factory, job_name="failing-local-1", workdir=tmp_path / "jobs")
    assert result.status == "Failed"
    assert result.containers == ()
    # The containers named in the compose file local mode wrote are gone.
    (compose_file,) = (tmp_path / "jobs" / "containers").glob("*/docker-compose.yaml")
    names = [
        svc["container_name"]
        for svc in yaml.safe_load(compose_file.read_text())["services"].values()
    ]
    inspect = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True)
    assert names and inspect.returncode != 0 and "No such" in inspect.stderr
    assert "ValueError" in result.failure_reason
    assert "batch_size 0 must be positive" in result.failure_reason
    assert len(result.failure_reason) <= 1024


@pytest.mark.slow
def test_two_containers_mpi_over_ssh(image: str, tmp_path: Path) -> None:
    # The mpi distribution: the toolkit starts sshd in both containers and mpirun on algo-1.
    factory = estimator_factory(
        image,
        "mpi_allreduce.py",
        SCRIPTS_DIR,
        {},
        instance_count=2,
        distribution={"mpi": {"enabled": True, "processes_per_host": 1}},
    )
    result = run_job_docker(factory, job_name="mpi-local-2", workdir=tmp_path / "jobs")
    assert result.status == "Completed", result.failure_reason
    model = members(result.model_artifacts)
    reports = [json.loads(model[f"rank{r}.json"]) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert [r["sum"] for r in reports] == [3, 3]
