"""Search space, samplers and pruners built from SDK-rendered tuning requests."""

import math
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sm_toolkit.local.tuning import search
from sm_toolkit.local.tuning.early_stopping import RunningAverageMedianPruner
from sm_toolkit.local.tuning.request import ParamRange

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import make_config  # noqa: E402


def _continuous(low, high, scaling="Auto"):
    return ParamRange("p", "continuous", min=low, max=high, scaling=scaling)


def test_auto_scaling_is_log_only_for_positive_ranges_spanning_two_decades():
    assert search.resolve_scaling(_continuous(1e-4, 1e-1)) == "Logarithmic"
    assert search.resolve_scaling(_continuous(0.1, 0.5)) == "Linear"
    assert search.resolve_scaling(_continuous(-1, 1000)) == "Linear"
    assert search.resolve_scaling(ParamRange("n", "integer", min=1, max=512)) == "Logarithmic"
    assert search.resolve_scaling(_continuous(1e-4, 1e-1, "Linear")) == "Linear"


def test_build_space_maps_each_range_type_and_scaling():
    config = make_config(
        ranges={
            "lr": {"type": "continuous", "min": 1e-4, "max": 1e-1, "scaling": "Logarithmic"},
            "momentum": {
                "type": "continuous",
                "min": 0.5,
                "max": 0.999,
                "scaling": "ReverseLogarithmic",
            },
            "width": {"type": "integer", "min": 8, "max": 64, "scaling": "Logarithmic"},
            "opt": {"type": "categorical", "values": ["sgd", "adam"]},
        }
    )
    space = search.build_space(config.ranges)
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["width"] == IntDistribution(8, 64, log=True)
    # Choices as the SDK sent them: JSON strings (a PyTorch estimator is a framework one).
    assert d["opt"] == CategoricalDistribution(('"sgd"', '"adam"'))
    rev = d[search.REVERSE_PREFIX + "momentum"]
    assert rev.log and rev.low == pytest.approx(0.001) and rev.high == pytest.approx(0.5)
    decoded = space.decode({search.REVERSE_PREFIX + "momentum": 0.01, "lr": 0.01})
    assert decoded == {"lr": 0.01, "momentum": pytest.approx(0.99)}


def test_reverse_logarithmic_samples_crowd_near_one():
    config = make_config(
        ranges={
            "m": {"type": "continuous", "min": 0.0, "max": 0.999, "scaling": "ReverseLogarithmic"}
        }
    )
    space = search.build_space(config.ranges)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [space.decode(study.ask(dict(space.distributions)).params)["m"] for _ in range(2000)]
    assert all(0.0 <= v <= 0.999 for v in values)
    # u = 1 - m is log-uniform on [0.001, 1]: P(m > 0.9) = log(100)/log(1000) = 2/3 (0.1 linear).
    share = sum(v > 0.9 for v in values) / len(values)
    assert 0.6 < share < 0.73


def test_encode_keeps_values_inside_the_space_and_reads_sagemaker_strings():
    config = make_config()
    space = search.build_space(config.ranges)
    expected = {"x": 0.5, "y": 3, "optimizer": '"adam"'}
    assert space.encode({"x": "0.5", "y": "3", "optimizer": '"adam"'}) == expected
    assert space.encode({"x": 0.5, "y": 3, "optimizer": "adam"}) == expected  # stored, decoded
    assert space.encode({"x": 7.0, "y": 2.5, "optimizer": "lion"}) == {}
    assert space.encode({"x": -2.0, "other": 1}) == {"x": -2.0}


def test_categorical_match_tells_bools_from_ints_and_strings():
    # Choices as sent: "true" and "1" decode to True and 1, '"1"' (JSON) to the string "1".
    dist = CategoricalDistribution(("true", "1", '"1"'))
    assert search.coerce(True, dist) == "true"
    assert search.coerce(1, dist) == "1" and search.coerce("1", dist) == "1"
    assert search.coerce('"1"', dist) == '"1"'
    assert search.coerce(2, dist) is None
    plain = CategoricalDistribution(("sgd", "adam"))  # a non-framework estimator's values
    assert search.coerce("adam", plain) == "adam" and search.coerce('"adam"', plain) == "adam"


@pytest.mark.parametrize(
    ("tuning", "sampler", "pruner"),
    [
        ({"strategy": "Random"}, optuna.samplers.RandomSampler, optuna.pruners.NopPruner),
        ({"strategy": "Bayesian"}, optuna.samplers.GPSampler, optuna.pruners.NopPruner),
        (
            {"strategy": "Bayesian", "early_stopping": "Auto"},
            optuna.samplers.GPSampler,
            RunningAverageMedianPruner,
        ),
        (
            {"strategy": "Hyperband", "hyperband": {"min_resource": 1, "max_resource": 9}},
            optuna.samplers.RandomSampler,
            optuna.pruners.HyperbandPruner,
        ),
        (
            {
                "strategy": "Grid",
                "max_jobs": None,
                "max_parallel_jobs": 1,
                "ranges": {"optimizer": {"type": "categorical", "values": ["sgd", "adam"]}},
            },
            optuna.samplers.GridSampler,
            optuna.pruners.NopPruner,
        ),
    ],
)
def test_each_strategy_gets_its_sampler_and_pruner(tuning, sampler, pruner):
    config = make_config(**tuning)
    study = search.make_study(config)
    assert isinstance(study.sampler, sampler)
    assert isinstance(study.pruner, pruner)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_seeded_random_sampler_repeats_its_suggestions():
    config = make_config(strategy="Random", random_seed=11)
    space = search.build_space(config.ranges)

    def draws():
        study = search.make_study(config)
        return [study.ask(dict(space.distributions)).params for _ in range(5)]

    first, second = draws(), draws()
    assert first == second
    assert len({p["x"] for p in first}) == 5 and all(math.isfinite(p["x"]) for p in first)
