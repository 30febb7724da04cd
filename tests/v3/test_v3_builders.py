"""sdk_v3 builders: every spec field v3 can express reaches the v3 request, through the
real ModelTrainer and HyperparameterTuner (rendered offline, validated by botocore)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

from sagemaker.train.distributed import MPI, Torchrun  # noqa: E402

from sm_toolkit.aws import mapping, sdk_v3  # noqa: E402
from sm_toolkit.aws.render import offline_boto_session, render  # noqa: E402
from sm_toolkit.errors import ConfigError  # noqa: E402
from sm_toolkit.spec import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _variant(tmp_path: Path, example: str, **changes):
    """An example spec with top-level keys replaced (None drops the key)."""
    data = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / f"{example}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def _trainer(spec):
    session = sdk_v3.make_session(offline_boto_session(spec.region, []), bucket=spec.bucket)
    return sdk_v3.build_trainer(spec, session)


def test_torchrun_keep_alive_checkpoint_tensorboard_retry_env_tags(tmp_path):
    spec = _variant(
        tmp_path,
        "moe-smddp",
        distribution={"type": "torch_distributed", "processes_per_host": 8},
        rules=None,
        tags={"team": "ml"},
    )
    req = render(spec, sdk="v3").request
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
    assert req["TensorBoardOutputConfig"] == {
        "S3OutputPath": "s3://my-ml-bucket/tensorboard/moe-lm",
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert req["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert req["Environment"] == {
        "NCCL_DEBUG": "WARN",
        mapping.CHECKPOINT_DIR_ENV: "/opt/ml/checkpoints",
        mapping.TENSORBOARD_DIR_ENV: "/opt/ml/output/tensorboard",
    }
    assert req["Tags"] == [{"Key": "team", "Value": "ml"}]
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400}
    assert "DebugRuleConfigurations" not in req
    # processes per host travel in distributed.json (sm_drivers), not as a hyperparameter
    assert mapping.NPROC_HYPERPARAMETER not in req["HyperParameters"]
    distributed = _trainer(spec).distributed
    assert isinstance(distributed, Torchrun) and distributed.process_count_per_node == 8


def test_spot_sets_managed_spot_and_max_wait(tmp_path):
    req = render(_variant(tmp_path, "cnn-spot", rules=None), sdk="v3").request
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert req["CheckpointConfig"]["S3Uri"] == "s3://my-ml-bucket/checkpoints/cnn-spot"


def test_mpi_options_become_a_list(tmp_path):
    spec = _variant(
        tmp_path,
        "cnn-torchrun",
        distribution={
            "type": "mpi",
            "processes_per_host": 2,
            "custom_mpi_options": "-x NCCL_DEBUG=INFO --verbose",
        },
    )
    distributed = _trainer(spec).distributed
    assert isinstance(distributed, MPI)
    assert distributed.process_count_per_node == 2
    assert distributed.mpi_additional_options == ["-x", "NCCL_DEBUG=INFO", "--verbose"]
    req = render(spec, sdk="v3").request
    assert req["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]


def test_smp_becomes_torchrun_with_smp_and_its_mp_parameters(tmp_path):
    import json

    spec = load_spec(ROOT / "examples" / "moe-smp.yaml")
    distributed = _trainer(spec).distributed
    assert isinstance(distributed, Torchrun) and distributed.process_count_per_node is None
    assert distributed.smp.model_dump(exclude_none=True) == spec.distribution.mp_parameters()
    req = render(spec, sdk="v3").request
    assert json.loads(req["HyperParameters"]["mp_parameters"]) == {
        "hybrid_shard_degree": 8, "expert_parallel_degree": 2, "tensor_parallel_degree": 1,
        "sm_activation_offloading": True, "activation_loading_horizon": 2,
    }  # fmt: skip


def test_no_distribution_sends_no_distributed_driver(tmp_path):
    assert _trainer(load_spec(ROOT / "examples" / "cnn-local.yaml")).distributed is None


def test_completion_criteria_warm_start_and_seed(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "tune-moe-bayesian-warmstart.yaml").read_text())
    tuning = data["tuning"]
    tuning["completion"] = {"target_objective_value": 2.5, "complete_on_convergence": True}
    tuning["warm_start"] = {"type": "IdenticalDataAndAlgorithm", "parents": ["a-1", "b-2"]}
    tuning["random_seed"] = 11
    tuning["max_runtime_seconds"] = 7200
    spec = _variant(tmp_path, "tune-moe-bayesian-warmstart", tuning=tuning)
    req = render(spec, sdk="v3").request
    config = req["HyperParameterTuningJobConfig"]
    assert config["TuningJobCompletionCriteria"] == {
        "TargetObjectiveMetricValue": 2.5,
        "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"},
    }
    assert config["RandomSeed"] == 11
    assert config["ResourceLimits"]["MaxRuntimeInSeconds"] == 7200
    assert req["WarmStartConfig"] == {
        "WarmStartType": "IdenticalDataAndAlgorithm",
        "ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": "a-1"},
            {"HyperParameterTuningJobName": "b-2"},
        ],
    }


def test_tuning_drops_warm_pool_and_tensorboard(tmp_path):
    spec = _variant(
        tmp_path,
        "tune-cnn-hyperband",
        warm_pool={"keep_alive_seconds": 600},
        tensorboard={"s3_output_path": "s3://my-ml-bucket/tb"},
    )
    definition = render(spec, sdk="v3").request["TrainingJobDefinition"]
    assert "KeepAlivePeriodInSeconds" not in definition["ResourceConfig"]
    assert "TensorBoardOutputConfig" not in definition


def test_grid_max_jobs_is_the_number_of_combinations():
    req = render(load_spec(ROOT / "examples" / "tune-rnn-grid.yaml"), sdk="v3").request
    config = req["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6


def test_a_seed_of_zero_is_refused_not_dropped(tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "tune-cnn-hyperband.yaml").read_text())
    data["tuning"]["random_seed"] = 0
    spec = _variant(tmp_path, "tune-cnn-hyperband", tuning=data["tuning"])
    with pytest.raises(ConfigError) as info:
        render(spec, sdk="v3")
    assert info.value.field == "tuning.random_seed"


# Bad inputs tried: each thing v3 cannot express, through the builder itself (and a seed
# of 0 above, which v3's tuner would silently drop).
@pytest.mark.parametrize(
    "example, field",
    [
        ("moe-smddp", "distribution.type"),
        ("rnn-pytorchddp", "distribution.type"),
        ("cnn-spot", "rules"),
    ],
)
def test_builder_refuses_what_v3_cannot_express(example, field):
    spec = load_spec(ROOT / "examples" / f"{example}.yaml")
    with pytest.raises(ConfigError) as info:
        _trainer(spec)
    assert info.value.field == field
    assert "\n" not in str(info.value)
