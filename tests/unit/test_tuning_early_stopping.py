"""Early stopping Auto: SageMaker's median-of-running-averages rule."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sm_toolkit.local.tuning.early_stopping import RunningAverageMedianPruner, running_average


def _study(direction: str, curves: list[list[float]], pruner) -> optuna.Study:
    study = optuna.create_study(direction=direction, pruner=pruner)
    for curve in curves:
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=curve[-1],
                params={"x": 0.0},
                distributions={"x": FloatDistribution(-1, 1)},
                intermediate_values=dict(enumerate(curve, start=1)),
            )
        )
    return study


def _prunes(study: optuna.Study, values: list[float]) -> list[bool]:
    trial = study.ask({"x": FloatDistribution(-1, 1)})
    decisions = []
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        decisions.append(trial.should_prune())
    return decisions


def test_running_average_is_the_mean_up_to_the_step():
    assert running_average({1: 10.0, 2: 2.0, 3: 0.0}, 2) == 6.0
    assert running_average({1: 10.0, 2: 2.0, 3: 0.0}, 3) == 4.0


def test_compares_with_running_averages_not_with_values_at_the_step():
    # Previous curves fall steeply: at step 3 their values are 1, their running averages 4.33.
    curves = [[10.0, 2.0, 1.0]] * 3
    study = _study("minimize", curves, RunningAverageMedianPruner())
    assert _prunes(study, [9.0, 3.0, 3.0]) == [False, False, False]
    # optuna's MedianPruner reads the values at step 3 and would stop the same trial.
    median = _study("minimize", curves, optuna.pruners.MedianPruner(n_startup_trials=3))
    assert bool(_prunes(median, [9.0, 3.0, 3.0])[-1])


def test_stops_a_trial_worse_than_the_median_when_minimising():
    curves = [[4.0, 3.0, 2.0], [5.0, 4.0, 3.0], [3.0, 2.0, 1.0]]
    study = _study("minimize", curves, RunningAverageMedianPruner())
    # Medians of running averages: step 1 -> 4.0, step 2 -> 4.0 (avgs 3.5, 4.5, 2.5).
    assert _prunes(study, [3.9, 4.1]) == [False, True]


def test_stops_a_trial_worse_than_the_median_when_maximising():
    curves = [[0.5, 0.7], [0.6, 0.8], [0.4, 0.6]]
    study = _study("maximize", curves, RunningAverageMedianPruner())
    # Running averages at step 2: 0.6, 0.7, 0.5 -> median 0.6.
    assert _prunes(study, [0.55, 0.59]) == [False, True]


def test_waits_for_enough_finished_trials_and_for_warmup():
    curves = [[1.0, 1.0], [1.0, 1.0]]
    assert _prunes(_study("minimize", curves, RunningAverageMedianPruner()), [9.0, 9.0]) == [
        False,
        False,
    ]
    warm = RunningAverageMedianPruner(n_startup_trials=2, n_warmup_steps=1)
    assert _prunes(_study("minimize", curves, warm), [9.0, 9.0]) == [False, True]


def test_rejects_meaningless_settings():
    with pytest.raises(ValueError):
        RunningAverageMedianPruner(n_startup_trials=0)
    with pytest.raises(ValueError):
        RunningAverageMedianPruner(n_warmup_steps=-1)
