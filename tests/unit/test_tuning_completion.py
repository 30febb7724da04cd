"""Completion criteria and limits, trial names, and the leaderboard's order."""

import re
import sys
from pathlib import Path

from sm_toolkit.local.tuning import trial_name
from sm_toolkit.local.tuning.completion import CompletionTracker, converged
from sm_toolkit.local.tuning.report import format_table, leaderboard_rows
from sm_toolkit.local.tuning.trials import TrialRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "quadratic"))
from quadratic_support import make_config  # noqa: E402


def _rec(index, objective, status="Completed", **kw):
    return TrialRecord(
        index=index,
        name=f"t-{index:03d}",
        hyperparameters={"x": index},
        status=status,
        objective=objective,
        **kw,
    )


def test_trial_names_follow_sagemaker():
    names = {trial_name("mytune", 1) for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"mytune-001-[0-9a-f]{8}", n) for n in names)
    assert re.fullmatch(r"t-1234-[0-9a-f]{8}", trial_name("t", 1234))
    # The longest tuning job name (32) still gives a valid training job name (<= 63).
    assert len(trial_name("a" * 32, 999)) == 45


def test_target_counts_in_the_objective_direction():
    tuning = make_config(
        objective={"metric": "val:loss", "type": "Maximize"},
        completion={"target_objective_value": 0.9},
    )
    tracker = CompletionTracker(tuning)
    tracker.update(_rec(1, 0.5))
    assert tracker.reason is None
    tracker.update(_rec(2, 0.95))
    assert tracker.reason == "TargetObjectiveMetricValueReached" and tracker.best.index == 2


def test_not_improving_counts_failed_and_stopped_jobs_and_resets_on_a_new_best():
    tracker = CompletionTracker(make_config(completion={"max_jobs_not_improving": 3}))
    for rec in (
        _rec(1, 5.0),
        _rec(2, 6.0),
        _rec(3, 4.0),
        _rec(4, 7.0),
        _rec(5, None, "Failed"),
        _rec(6, 9.0, "Stopped"),
    ):
        assert tracker.reason is None
        tracker.update(rec)
    assert tracker.reason == "MaxNumberOfTrainingJobsNotImproving" and tracker.best.index == 3


def test_runtime_limit_uses_the_clock():
    now = [100.0]
    tracker = CompletionTracker(make_config(max_runtime_seconds=120), clock=lambda: now[0])
    now[0] = 219.0
    assert not tracker.runtime_exceeded()
    now[0] = 220.0
    assert tracker.runtime_exceeded()
    assert not CompletionTracker(make_config()).runtime_exceeded()


def test_convergence_rule():
    improving = [10.0 - i for i in range(12)]
    assert not converged(improving, maximize=False)
    flat_late = [10.0, 5.0, 3.0, 2.0, 1.5, 1.2, 1.19, 1.3, 1.25, 1.4, 1.21, 1.5]
    assert converged(flat_late, maximize=False)
    assert not converged(flat_late[:9], maximize=False)  # too few to judge
    assert converged([-v for v in flat_late], maximize=True)


def test_convergence_stops_a_tracker_that_asked_for_it():
    # Converged at the 11th: the best of the first 6 (1.2) is within 1% of the spread (8.81)
    # of the best of all 11 (1.19).
    values = [10.0, 5.0, 3.0, 2.0, 1.5, 1.2, 1.19, 1.3, 1.25, 1.4, 1.21]
    tracker = CompletionTracker(make_config(completion={"complete_on_convergence": True}))
    off = CompletionTracker(make_config())
    for i, value in enumerate(values, start=1):
        assert tracker.reason is None
        tracker.update(_rec(i, value))
        off.update(_rec(i, value))
    assert tracker.reason == "ConvergenceDetected" and off.reason is None


def test_leaderboard_puts_completed_first_then_stopped_then_unscored():
    records = [
        _rec(1, 3.0),
        _rec(2, 1.0, "Stopped", early_stopped=True),
        _rec(3, 2.0),
        _rec(4, None, "Failed", failure_reason="boom"),
    ]
    rows = leaderboard_rows(records, maximize=False, param_names=["x"])
    assert [r["trial"] for r in rows] == ["t-003", "t-001", "t-002", "t-004"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["status"] == "Stopped (early stopped)" and rows[3]["failure_reason"] == "boom"
    maximised = leaderboard_rows(records, maximize=True, param_names=["x"])
    assert [r["trial"] for r in maximised][:2] == ["t-001", "t-003"]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["rank", "trial", "status", "objective", "epochs", "seconds", "x"]
    assert len(table) == 5 and "boom" not in format_table(rows)
