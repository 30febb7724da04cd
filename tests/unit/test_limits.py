"""The API's limits read from botocore's model: each kind of limit on a real request."""

from __future__ import annotations

import copy
import json

import pytest
from cli_helpers import ROOT

from sm_toolkit.aws import limits
from sm_toolkit.errors import ConfigError

TRAIN = json.loads((ROOT / "tests" / "golden" / "cnn-spot.json").read_text())
TUNE = json.loads((ROOT / "tests" / "golden" / "tune-cnn-hyperband.json").read_text())


def _changed(request: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(request)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def test_the_golden_requests_break_no_limit():
    assert limits.violations("CreateTrainingJob", TRAIN) == []
    assert limits.violations("CreateHyperParameterTuningJob", TUNE) == []


@pytest.mark.parametrize(
    "path, value, field, allowed",
    [
        (("ResourceConfig", "InstanceType"), "ml.m5.larg", "instance.type", "ml.m5.large"),
        (("TrainingJobName",), "a" * 64, "name", "at most 63"),
        (("TrainingJobName",), "bad_name", "name", "must match"),
        (("HyperParameters", "x"), "y" * 2501, "hyperparameters.x", "2500"),
        (("Environment", "K\n"), "v", "environment.K\\n", "must match"),
        (("StoppingCondition", "MaxRuntimeInSeconds"), 0, "max_run_seconds", "at least 1"),
        (("ResourceConfig", "KeepAlivePeriodInSeconds"), 99999, "warm_pool.keep_alive_seconds",
         "at most 21600"),
        (("Tags",), [{"Key": "k", "Value": "a#b"}], "tags.k", "must match"),
    ],
)  # fmt: skip
def test_training_limits_name_the_spec_field(path, value, field, allowed):
    with pytest.raises(ConfigError) as info:
        limits.check("CreateTrainingJob", _changed(TRAIN, path, value))
    assert str(info.value).startswith(field + ":"), str(info.value)
    assert allowed in str(info.value)


def test_nan_is_refused_where_the_api_takes_a_number():
    criteria = {"TargetObjectiveMetricValue": float("nan")}
    request = _changed(TUNE, ("HyperParameterTuningJobConfig", "TuningJobCompletionCriteria"),
                       criteria)  # fmt: skip
    (v,) = limits.violations("CreateHyperParameterTuningJob", request)
    assert "finite" in v.allowed
    field = limits.spec_field(v.path, request)
    assert field == "tuning.completion"


def test_a_map_over_its_size_is_one_violation_with_the_count():
    hps = {f"h{i}": "1" for i in range(101)}
    (v,) = limits.violations("CreateTrainingJob", _changed(TRAIN, ("HyperParameters",), hps))
    assert v.value == "101 entries" and v.allowed == "at most 100 entries"


def _shape(name: str):
    from sm_toolkit.contract import service_model

    return service_model().shape_for(name)


def test_the_spec_checks_that_run_before_rendering_are_the_models_own():
    """The spec's patterns check a file before any SDK runs; each one is the model's
    pattern, its length folded in, so they cannot drift from what the request check says."""
    from sm_toolkit.spec import job, overrides, tuning

    def anchored(name: str) -> str:
        return f"^{_shape(name).metadata['pattern']}$"

    assert job.JOB_NAME_PATTERN == anchored("TrainingJobName")
    assert tuning.TUNING_NAME_PATTERN == anchored("HyperParameterTuningJobName")
    assert job.ROLE_ARN_PATTERN == anchored("RoleArn")
    channel, env_key = _shape("ChannelName").metadata, _shape("TrainingEnvironmentKey").metadata
    assert job.CHANNEL_PATTERN == f"^{channel['pattern'][:-1]}{{1,{channel['max']}}}$"
    assert job.ENV_KEY_PATTERN == f"^{env_key['pattern'][:-1]}{{0,{env_key['max'] - 1}}}$"
    assert overrides.MAX_VALUE_CHARS == _shape("HyperParameterValue").metadata["max"]


def test_generated_job_names_fit_the_models_lengths():
    from sm_toolkit.aws.names import max_length, replay_name, unique_name

    assert max_length(tuning=False) == _shape("TrainingJobName").metadata["max"] == 63
    assert max_length(tuning=True) == _shape("HyperParameterTuningJobName").metadata["max"] == 32
    for tuning, operation, member in (
        (False, "CreateTrainingJob", "TrainingJobName"),
        (True, "CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
    ):
        name = unique_name("x" * 80, tuning=tuning)
        assert len(name) == max_length(tuning=tuning)
        assert not limits.violations(operation, {member: name}), name
        cut_at_a_hyphen = unique_name("a-" * 40, tuning=tuning)  # the cut drops a trailing hyphen
        assert not limits.violations(operation, {member: cut_at_a_hyphen}), cut_at_a_hyphen
    assert len(replay_name("x" * 80)) == 63


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a" * 63, True), ("a-b--c", True), ("a" * 64, False), ("-a", False), ("a_b", False)],
)
def test_the_engine_takes_the_job_names_the_model_allows(name, ok):
    """Bad inputs tried: 64 characters, a leading hyphen, an underscore."""
    from sm_toolkit.local.plan import plan_from_request

    request = _changed(TRAIN, ("TrainingJobName",), name)
    if ok:
        assert plan_from_request(request).name == name
    else:
        with pytest.raises(ConfigError, match="TrainingJobName"):
            plan_from_request(request)
