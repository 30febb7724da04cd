"""render: the SDK's own request, offline, validated by botocore, kept as golden files.

The golden files are the bare requests `render` prints (what `aws sagemaker
create-training-job --cli-input-json` takes). Regenerate them after an intended change
with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sm_toolkit.aws import mapping
from sm_toolkit.aws.render import render
from sm_toolkit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"


def _render(name: str):
    return render(load_spec(ROOT / "examples" / f"{name}.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_matches_its_golden_request(path):
    document = render(load_spec(path)).request
    golden = GOLDEN / f"{path.stem}.json"
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {path.name}: run with UPDATE_GOLDEN=1"
    assert json.loads(golden.read_text()) == document


def test_smddp_example_carries_everything_it_asked_for():
    req = _render("moe-smddp").request
    hps = req["HyperParameters"]
    assert hps["sagemaker_distributed_dataparallel_enabled"] == "true"
    assert req["ResourceConfig"] == {
        "InstanceCount": 2,
        "InstanceType": "ml.p4d.24xlarge",
        "KeepAlivePeriodInSeconds": 1800,
        "VolumeSizeInGB": 100,
    }
    assert req["CheckpointConfig"] == {
        "S3Uri": "s3://my-ml-bucket/checkpoints/moe-lm",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert req["Environment"][mapping.CHECKPOINT_DIR_ENV] == "/opt/ml/checkpoints"
    assert req["Environment"][mapping.TENSORBOARD_DIR_ENV] == "/opt/ml/output/tensorboard"
    assert {r["RuleConfigurationName"] for r in req["DebugRuleConfigurations"]} == {
        "LossNotDecreasing",
        "ExplodingTensor",
    }
    assert req["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert req["TensorBoardOutputConfig"]["S3OutputPath"] == "s3://my-ml-bucket/tensorboard/moe-lm"
    assert req["AlgorithmSpecification"]["MetricDefinitions"][0]["Name"] == "train:loss"


def test_pytorchddp_becomes_smdistributed_dataparallel():
    hps = _render("rnn-pytorchddp").request["HyperParameters"]
    assert hps["sagemaker_distributed_dataparallel_enabled"] == "true"
    assert not any("pytorch_ddp" in k for k in hps)


def test_torchrun_example_sets_torchrun_and_processes_per_host():
    req = _render("cnn-torchrun").request
    assert req["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert req["HyperParameters"][mapping.NPROC_HYPERPARAMETER] == "4"
    assert req["Tags"] == [{"Key": "project", "Value": "sm-toolkit"}]


def test_spot_example_has_spot_and_checkpoints():
    req = _render("cnn-spot").request
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert req["CheckpointConfig"]["S3Uri"] == "s3://my-ml-bucket/checkpoints/cnn-spot"


def test_grid_gets_max_jobs_equal_to_the_combinations():
    rendered = _render("tune-rnn-grid")
    assert rendered.operation == "CreateHyperParameterTuningJob"
    config = rendered.request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6
    names = {r["Name"] for r in config["ParameterRanges"]["CategoricalParameterRanges"]}
    assert names == {"cell", "hidden"}


def test_hyperband_request_has_its_strategy_config():
    config = _render("tune-cnn-hyperband").request["HyperParameterTuningJobConfig"]
    assert config["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MaxResource": 9, "MinResource": 1}
    }
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    scaling = {
        r["Name"]: r["ScalingType"] for r in config["ParameterRanges"]["ContinuousParameterRanges"]
    }
    assert scaling == {"lr": "Logarithmic", "weight_decay": "Auto"}


def test_warm_start_and_completion_criteria_reach_the_request():
    req = _render("tune-moe-bayesian-warmstart").request
    assert req["WarmStartConfig"] == {
        "WarmStartType": "TransferLearning",
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "moe-bo-001"}],
    }
    criteria = req["HyperParameterTuningJobConfig"]["TuningJobCompletionCriteria"]
    assert criteria["BestObjectiveNotImproving"] == {"MaxNumberOfTrainingJobsNotImproving": 5}
    assert req["TrainingJobDefinition"]["EnableManagedSpotTraining"] is True


def test_tuning_request_names_the_job_explicitly():
    req = _render("tune-cnn-hyperband").request
    assert req["HyperParameterTuningJobName"] == "cnn-hb-001"


def test_render_uploads_nothing_and_reports_where_code_would_go():
    rendered = _render("cnn-spot")
    assert rendered.uploads == ["s3://my-ml-bucket/output/cnn-digits-spot/source/sourcedir.tar.gz"]
    submit = json.loads(rendered.request["HyperParameters"]["sagemaker_submit_directory"])
    assert submit == rendered.uploads[0]
