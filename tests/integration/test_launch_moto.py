"""launch: every example is submitted through the SDK to a moto server on 127.0.0.1, and
the Describe call shows what the spec asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from sm_toolkit.aws.launch import launch
from sm_toolkit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def example_bucket(s3):
    s3.create_bucket(Bucket="my-ml-bucket")
    s3.create_bucket(Bucket="sm-toolkit-demo")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_launches(path):
    spec = load_spec(path)
    name = f"{path.stem[:20]}-t1"
    launched = launch(spec, job_name=name)
    if spec.tuning is None:
        assert launched.description["TrainingJobName"] == name
        assert launched.description["TrainingJobStatus"] == "Completed"  # moto finishes at once
    else:
        assert launched.description["HyperParameterTuningJobName"] == name


def _describe(name: str) -> dict:
    return boto3.client("sagemaker", region_name="us-east-1").describe_training_job(
        TrainingJobName=name
    )


def test_smddp_launch_describes_distribution_checkpoint_warm_pool_and_rules():
    launch(load_spec(ROOT / "examples" / "moe-smddp.yaml"), job_name="moe-smddp-check")
    desc = _describe("moe-smddp-check")
    assert desc["HyperParameters"]["sagemaker_distributed_dataparallel_enabled"] == "true"
    assert desc["CheckpointConfig"]["S3Uri"] == "s3://my-ml-bucket/checkpoints/moe-lm"
    assert desc["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800
    assert desc["ResourceConfig"]["InstanceCount"] == 2
    rules = {r["RuleConfigurationName"] for r in desc["DebugRuleConfigurations"]}
    assert rules == {"LossNotDecreasing", "ExplodingTensor"}
    # the code went to S3 next to the output, not to a default bucket (no STS call)
    code = json.loads(desc["HyperParameters"]["sagemaker_submit_directory"])
    bucket, key = code[len("s3://") :].split("/", 1)
    assert boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_spot_launch_describes_spot_and_max_wait():
    launch(load_spec(ROOT / "examples" / "cnn-spot.yaml"), job_name="cnn-spot-check")
    desc = _describe("cnn-spot-check")
    assert desc["EnableManagedSpotTraining"] is True
    assert desc["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
    assert desc["CheckpointConfig"]["S3Uri"] == "s3://my-ml-bucket/checkpoints/cnn-spot"


def test_torchrun_launch_describes_torch_distributed():
    launch(load_spec(ROOT / "examples" / "cnn-torchrun.yaml"), job_name="cnn-torchrun-check")
    hps = _describe("cnn-torchrun-check")["HyperParameters"]
    assert hps["sagemaker_torch_distributed_enabled"] == "true"
    assert hps["sagemaker_mpi_num_of_processes_per_host"] == "4"


def test_tuning_launch_describes_strategy_ranges_and_static_hyperparameters():
    launch(load_spec(ROOT / "examples" / "tune-cnn-hyperband.yaml"), job_name="hb-check")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    desc = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hb-check")
    config = desc["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband"
    assert config["StrategyConfig"]["HyperbandStrategyConfig"]["MaxResource"] == 9
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "val:accuracy",
    }
    static = desc["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["epochs"] == "9" and "lr" not in static


def test_local_input_is_uploaded_before_launch(tmp_path, s3):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    spec_path = tmp_path / "spec.yaml"
    text = (ROOT / "examples" / "cnn-local.yaml").read_text()
    spec_path.write_text(text.replace("s3://sm-toolkit-demo/data/digits", "data"))
    launch(load_spec(spec_path), job_name="local-input-check")
    channel = _describe("local-input-check")["InputDataConfig"][0]
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == "s3://sm-toolkit-demo/output/local-input-check/input/train"
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(
            Bucket="sm-toolkit-demo", Prefix="output/local-input-check/input/"
        )["Contents"]
    ]
    assert keys == ["output/local-input-check/input/train/rows.csv"]


def test_cli_launch_reports_status_and_the_service_refusal_in_one_line():
    cmd = [
        sys.executable,
        "-m",
        "sm_toolkit.cli",
        "launch",
        str(ROOT / "examples" / "tune-rnn-grid.yaml"),
        "--job-name",
        "grid-twice",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "tuning job grid-twice: Completed" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith("sm-toolkit: error: ")
    assert "ResourceInUse" in second.stderr
