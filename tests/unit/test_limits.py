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
