"""Local hyperparameter tuning: a spec's ``tuning:`` section run on this machine with
SageMaker's semantics (strategies, scaling, early stopping, Hyperband, completion criteria,
warm start), trials being local training jobs run concurrently.

Entry point: :func:`run_local_tuning` (``sm-toolkit tune SPEC --local``).
"""

from sm_toolkit.local.tuning.trials import TrialRecord, trial_name
from sm_toolkit.local.tuning.tuner import TuningResult, run_local_tuning

__all__ = ["TrialRecord", "TuningResult", "run_local_tuning", "trial_name"]
