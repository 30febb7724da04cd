"""Reading a CreateHyperParameterTuningJob request (rendered by the SDK, and the golden ones)
and building each trial's CreateTrainingJob request as AMT does.

Bad requests tried: a training-job request, an unknown strategy (botocore does not check
enums), an objective metric without a definition, MinValue > MaxValue, a non-numeric bound,
ScalingType Cubic, Logarithmic from 0, ReverseLogarithmic on an integer range, Grid with a
continuous range, Grid with too many jobs, Hyperband with early stopping Auto, a
StrategyConfig without Hyperband, Hyperband without MaxResource or an epochs hyperparameter,
no job limit at all, a missing required member (botocore's model), multi-algorithm
definitions, Autotune, InstanceConfigs and AlgorithmName.
"""

import json
import sys
from pathlib import Path

import pytest
from botocore.validate import ParamValidator

from sm_toolkit.aws.render import render
from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import read_tuning_request, trial_request
from sm_toolkit.local.tuning.request import input_shape
from sm_toolkit.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import FIXTURE_DIR, job_dict, make_request  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _golden(name: str) -> dict:
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    return data.get("Request", data)


def test_a_rendered_request_reads_as_the_spec_said():
    config = read_tuning_request(
        make_request(
            strategy="Bayesian",
            early_stopping="Auto",
            max_runtime_seconds=600,
            completion={"target_objective_value": 0.6, "max_jobs_not_improving": 4},
            warm_start={"type": "TransferLearning", "parents": ["p1", "p2"]},
        )
    )
    assert (config.job_name, config.strategy, config.early_stopping) == ("quad", "Bayesian", "Auto")
    assert (config.max_jobs, config.max_parallel_jobs, config.max_runtime_seconds) == (6, 2, 600)
    assert config.objective.metric == "val:loss" and config.objective.type == "Minimize"
    assert config.objective.regex.startswith("val:loss=(")
    assert config.random_seed == 7
    assert config.ranges["x"].min == -2.0 and config.ranges["x"].max == 3.0
    assert config.ranges["y"].type == "integer" and config.ranges["y"].max == 5
    assert config.ranges["optimizer"].values == ('"sgd"', '"adam"', '"rmsprop"')
    assert config.completion.target_objective_value == 0.6
    assert config.completion.max_jobs_not_improving == 4
    assert not config.completion.complete_on_convergence
    assert config.warm_start.type == "TransferLearning"
    assert sorted(config.warm_start.parents) == ["p1", "p2"]
    assert config.static_hyperparameters["epochs"] == "4"


@pytest.mark.parametrize(
    "name",
    [
        f"{sdk}tune-{name}"
        for sdk in ("", "v3/")  # what SDK v2 and SDK v3 build for the same specs
        for name in ("cnn-hyperband", "moe-bayesian-warmstart", "rnn-grid")
    ],
)
def test_every_golden_tuning_request_reads(name):
    request = _golden(name)
    config = read_tuning_request(request)
    hp_config = request["HyperParameterTuningJobConfig"]
    assert config.strategy == hp_config["Strategy"]
    assert config.max_parallel_jobs == hp_config["ResourceLimits"]["MaxParallelTrainingJobs"]
    assert config.objective.metric == hp_config["HyperParameterTuningJobObjective"]["MetricName"]
    if config.strategy == "Hyperband":
        assert (config.hyperband.min_resource, config.hyperband.max_resource) == (1, 9)
        assert config.ranges["lr"].scaling == "Logarithmic"


def test_hyperband_resource_falls_back_to_the_epochs_hyperparameter():
    request = _golden("tune-cnn-hyperband")
    del request["HyperParameterTuningJobConfig"]["StrategyConfig"]
    config = read_tuning_request(request)
    assert (config.hyperband.min_resource, config.hyperband.max_resource) == (1, 9)
    del request["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"]
    with pytest.raises(ConfigError, match=r"HyperbandStrategyConfig\.MaxResource: missing"):
        read_tuning_request(request)


def _bad(edit):
    request = make_request()
    edit(request)
    return request


CFG = "HyperParameterTuningJobConfig"


def _set(path, value):
    def edit(request):
        node = request
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set([CFG, "Strategy"], "Annealing"), r"^HyperParameterTuningJobConfig\.Strategy: "),
        (
            _set([CFG, "HyperParameterTuningJobObjective", "MetricName"], "val:acc"),
            r"HyperParameterTuningJobObjective\.MetricName: 'val:acc'.*MetricDefinitions",
        ),
        (
            _set([CFG, "ParameterRanges", "ContinuousParameterRanges", 0, "MinValue"], "4"),
            r"ContinuousParameterRanges\[0\]\.MaxValue: '3\.0'.*MinValue",
        ),
        (
            _set([CFG, "ParameterRanges", "ContinuousParameterRanges", 0, "MaxValue"], "big"),
            r"ContinuousParameterRanges\[0\]\.MaxValue: 'big'.*finite number",
        ),
        (
            _set([CFG, "ParameterRanges", "ContinuousParameterRanges", 0, "ScalingType"], "Cubic"),
            r"ScalingType: 'Cubic'.*one of Auto, Linear, Logarithmic, ReverseLogarithmic",
        ),
        (
            _set(
                [CFG, "ParameterRanges", "ContinuousParameterRanges", 0, "ScalingType"],
                "Logarithmic",
            ),
            r"ContinuousParameterRanges\[0\]\.ScalingType.*MinValue > 0",
        ),
        (
            _set(
                [CFG, "ParameterRanges", "IntegerParameterRanges", 0, "ScalingType"],
                "ReverseLogarithmic",
            ),
            r"IntegerParameterRanges\[0\]\.ScalingType.*continuous 0 <= x < 1",
        ),
        (_set([CFG, "Strategy"], "Grid"), r"ParameterRanges: 'x'.*categorical ranges only"),
        (
            lambda r: r[CFG].update(Strategy="Hyperband", TrainingJobEarlyStoppingType="Auto"),
            r"TrainingJobEarlyStoppingType: 'Auto'.*Off with Hyperband",
        ),
        (
            _set([CFG, "StrategyConfig"], {"HyperbandStrategyConfig": {"MaxResource": 3}}),
            r"StrategyConfig.*only with Strategy Hyperband",
        ),
        (
            lambda r: r[CFG]["ResourceLimits"].pop("MaxNumberOfTrainingJobs"),
            r"ResourceLimits\.MaxNumberOfTrainingJobs: missing",
        ),
        (
            lambda r: r[CFG]["ResourceLimits"].pop("MaxParallelTrainingJobs"),
            r"^CreateHyperParameterTuningJob: .*MaxParallelTrainingJobs",
        ),
        (
            lambda r: r.update(TrainingJobDefinitions=[r["TrainingJobDefinition"]]),
            r"^TrainingJobDefinitions: .*multi-algorithm",
        ),
        (_set(["Autotune"], {"Mode": "Enabled"}), r"^Autotune: "),
        (
            _set(
                ["TrainingJobDefinition", "HyperParameterTuningResourceConfig", "InstanceConfigs"],
                [{"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}],
            ),
            r"HyperParameterTuningResourceConfig\.InstanceConfigs",
        ),
        (
            lambda r: (
                r["TrainingJobDefinition"]["AlgorithmSpecification"].update(
                    TrainingImage=None, AlgorithmName="arn:aws:sagemaker:us-east-1:1:algorithm/x"
                )
                or r["TrainingJobDefinition"]["AlgorithmSpecification"].pop("TrainingImage")
            ),
            r"AlgorithmSpecification\.TrainingImage: missing",
        ),
    ],
)
def test_a_bad_request_names_its_field_in_one_line(edit, field):
    with pytest.raises(ConfigError, match=field) as info:
        read_tuning_request(_bad(edit))
    assert "\n" not in str(info.value)


def test_grid_takes_the_number_of_combinations_or_nothing():
    ranges = {
        "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        "y": {"type": "categorical", "values": [1, 2, 3]},
    }
    request = make_request(strategy="Grid", max_jobs=6, ranges=ranges)
    assert read_tuning_request(request).max_jobs == 6
    del request[CFG]["ResourceLimits"]["MaxNumberOfTrainingJobs"]
    assert read_tuning_request(request).max_jobs == 6
    request[CFG]["ResourceLimits"]["MaxNumberOfTrainingJobs"] = 5
    with pytest.raises(ConfigError, match=r"MaxNumberOfTrainingJobs: 5.*combinations \(6\)"):
        read_tuning_request(request)


def _valid_training_request(request: dict) -> None:
    report = ParamValidator().validate(request, input_shape("CreateTrainingJob"))
    assert not report.has_errors(), report.generate_report()


def test_trial_request_is_what_amt_creates_and_botocore_accepts():
    tuning = make_request()
    request = trial_request(tuning, "quad-001-0a1b2c3d", {"x": 0.25, "y": 3, "optimizer": '"adam"'})
    _valid_training_request(request)
    hps = request["HyperParameters"]
    assert hps["x"] == "0.25" and hps["y"] == "3" and hps["optimizer"] == '"adam"'
    assert hps["_tuning_objective_metric"] == "val:loss"  # AMT's own, not JSON-encoded
    assert hps["epochs"] == "4" and hps["sagemaker_program"] == '"train.py"'
    assert all(isinstance(v, str) for v in hps.values())
    definition = tuning["TrainingJobDefinition"]
    assert request["TrainingJobName"] == "quad-001-0a1b2c3d"
    assert request["AlgorithmSpecification"] == definition["AlgorithmSpecification"]
    assert request["ResourceConfig"] == definition["HyperParameterTuningResourceConfig"]
    for key in ("RoleArn", "OutputDataConfig", "StoppingCondition", "Environment"):
        assert request[key] == definition[key]
    # A new dict: editing one trial's request leaves the tuning request and other trials alone.
    request["HyperParameters"]["epochs"] = "99"
    assert tuning["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] == "4"


def test_trials_have_no_warm_pool_rules_tensorboard_or_profiler():
    # A spec with all of them: the tuning request cannot carry them, so no trial gets them.
    extra = {
        "warm_pool": {"keep_alive_seconds": 600},
        "rules": ["vanishing_gradient"],
        "tensorboard": {"s3_output_path": "s3://sm-toolkit-test/tb"},
        "max_run_seconds": 3600,
        "checkpoint": {"s3_uri": "s3://sm-toolkit-test/ckpt"},
        "max_retry_attempts": 2,
        "environment": {"MY_FLAG": "1"},
    }
    spec = parse_spec({**job_dict(max_jobs=2), **extra}, base_dir=FIXTURE_DIR)
    request = render(spec).request
    trial = trial_request(request, "quad-002-00000000", {"x": 1.0, "y": 2, "optimizer": '"sgd"'})
    _valid_training_request(trial)
    for absent in (
        "DebugRuleConfigurations",
        "DebugHookConfig",
        "TensorBoardOutputConfig",
        "ProfilerConfig",
        "ProfilerRuleConfigurations",
    ):
        assert absent not in trial, absent
    assert "KeepAlivePeriodInSeconds" not in trial["ResourceConfig"]
    assert trial["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert trial["CheckpointConfig"]["S3Uri"] == "s3://sm-toolkit-test/ckpt"
    assert trial["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert trial["Environment"] == request["TrainingJobDefinition"]["Environment"]
    assert trial["Environment"]["MY_FLAG"] == "1"


def test_spot_training_reaches_the_trials():
    # Spot excludes a warm pool (a spec rule), so it is a spec of its own.
    extra = {"spot": {"max_wait_seconds": 7200}, "max_run_seconds": 3600}
    spec = parse_spec({**job_dict(max_jobs=2), **extra}, base_dir=FIXTURE_DIR)
    trial = trial_request(render(spec).request, "quad-003-00000000", {"x": 0.0})
    _valid_training_request(trial)
    assert trial["EnableManagedSpotTraining"] is True
    assert trial["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
