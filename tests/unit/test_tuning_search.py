"""Search space, samplers and pruners built from a spec's tuning section."""

import math
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import search
from sm_toolkit.local.tuning.early_stopping import RunningAverageMedianPruner
from sm_toolkit.spec import ContinuousRange, IntegerRange

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import make_spec  # noqa: E402


def test_auto_scaling_is_log_only_for_positive_ranges_spanning_two_decades():
    assert search.resolve_scaling(ContinuousRange(type="continuous", min=1e-4, max=1e-1)) == (
        "Logarithmic"
    )
    assert search.resolve_scaling(ContinuousRange(type="continuous", min=0.1, max=0.5)) == "Linear"
    assert search.resolve_scaling(ContinuousRange(type="continuous", min=-1, max=1000)) == "Linear"
    assert search.resolve_scaling(IntegerRange(type="integer", min=1, max=512)) == "Logarithmic"
    explicit = ContinuousRange(type="continuous", min=1e-4, max=1e-1, scaling="Linear")
    assert search.resolve_scaling(explicit) == "Linear"


def test_build_space_maps_each_range_type_and_scaling():
    spec = make_spec(
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
    space = search.build_space(spec.tuning.ranges)
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["width"] == IntDistribution(8, 64, log=True)
    assert d["opt"] == CategoricalDistribution(("sgd", "adam"))
    rev = d[search.REVERSE_PREFIX + "momentum"]
    assert rev.log and rev.low == pytest.approx(0.001) and rev.high == pytest.approx(0.5)
    decoded = space.decode({search.REVERSE_PREFIX + "momentum": 0.01, "lr": 0.01})
    assert decoded == {"lr": 0.01, "momentum": pytest.approx(0.99)}


def test_reverse_logarithmic_samples_crowd_near_one():
    spec = make_spec(
        ranges={
            "m": {"type": "continuous", "min": 0.0, "max": 0.999, "scaling": "ReverseLogarithmic"}
        }
    )
    space = search.build_space(spec.tuning.ranges)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [space.decode(study.ask(dict(space.distributions)).params)["m"] for _ in range(2000)]
    assert all(0.0 <= v <= 0.999 for v in values)
    # u = 1 - m is log-uniform on [0.001, 1]: P(m > 0.9) = log(100)/log(1000) = 2/3 (0.1 linear).
    share = sum(v > 0.9 for v in values) / len(values)
    assert 0.6 < share < 0.73


def test_encode_keeps_values_inside_the_space_and_reads_sagemaker_strings():
    spec = make_spec()
    space = search.build_space(spec.tuning.ranges)
    assert space.encode({"x": "0.5", "y": "3", "optimizer": '"adam"'}) == {
        "x": 0.5,
        "y": 3,
        "optimizer": "adam",
    }
    assert space.encode({"x": 7.0, "y": 2.5, "optimizer": "lion"}) == {}
    assert space.encode({"x": -2.0, "other": 1}) == {"x": -2.0}


def test_categorical_match_tells_bools_from_ints():
    dist = CategoricalDistribution((True, 1, "1"))
    assert search.coerce(True, dist) is True
    assert search.coerce(1, dist) == 1 and search.coerce(1, dist) is not True
    assert search.coerce("true", dist) is True
    assert search.coerce('"1"', dist) in ("1", 1)


def test_max_jobs_defaults_like_sagemaker():
    grid = make_spec(
        strategy="Grid",
        max_jobs=None,
        max_parallel_jobs=1,
        ranges={
            "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
            "y": {"type": "categorical", "values": [1, 2, 3]},
        },
    )
    assert search.effective_max_jobs(grid.tuning) == 6


def test_hyperband_resources_from_the_section_or_the_epochs_hyperparameter():
    spec = make_spec(strategy="Hyperband", hyperband={"min_resource": 2, "max_resource": 9})
    assert search.hyperband_resources(spec.tuning, spec.hyperparameters) == (2, 9, "epochs")
    bare = make_spec(strategy="Hyperband", epochs=12)
    assert search.hyperband_resources(bare.tuning, bare.hyperparameters) == (1, 12, "epochs")
    with pytest.raises(ConfigError, match="max_resource"):
        search.hyperband_resources(bare.tuning, {"lr": 0.1})


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
    spec = make_spec(**tuning)
    study = search.make_study(spec.tuning, spec.hyperparameters)
    assert isinstance(study.sampler, sampler)
    assert isinstance(study.pruner, pruner)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_seeded_random_sampler_repeats_its_suggestions():
    spec = make_spec(strategy="Random", random_seed=11)
    space = search.build_space(spec.tuning.ranges)

    def draws():
        study = search.make_study(spec.tuning, spec.hyperparameters)
        return [study.ask(dict(space.distributions)).params for _ in range(5)]

    first, second = draws(), draws()
    assert first == second
    assert len({p["x"] for p in first}) == 5 and all(math.isfinite(p["x"]) for p in first)
