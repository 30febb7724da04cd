"""Local hyperparameter tuning: a CreateHyperParameterTuningJob request run on this machine
with SageMaker's semantics (strategies, scaling, early stopping, Hyperband, completion
criteria, warm start), each trial a CreateTrainingJob request run by the local engine.

Entry point: :func:`run_local_tuning` (``sm-toolkit tune SPEC --local``); the pure parts are
:func:`read_tuning_request` and :func:`trial_request`.
"""

from sm_toolkit.local.tuning.request import TuningConfig, read_tuning_request
from sm_toolkit.local.tuning.trial_job import trial_request
from sm_toolkit.local.tuning.trials import TrialRecord, trial_name
from sm_toolkit.local.tuning.tuner import TuningResult, run_local_tuning

__all__ = [
    "TrialRecord",
    "TuningConfig",
    "TuningResult",
    "read_tuning_request",
    "run_local_tuning",
    "trial_name",
    "trial_request",
]
