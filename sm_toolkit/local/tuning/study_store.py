"""The tuning job's optuna study in an RDB storage: SQLite, ``study.db`` in the job's folder.

Every trial lives there from the moment it is asked for: its parameters, intermediate
objective values, state, and (once finished) its :class:`TrialRecord` as a user attribute.
So a tuning job whose process was killed can be resumed (``tune --local --resume``): the
finished trials are read back as they were, a trial that was still running when the process
died (or that Ctrl-C stopped) is marked FAIL and not counted, and only the remaining trials
run. optuna-dashboard opens the same file:
``optuna-dashboard sqlite:///<workdir>/tuning/<job>/study.db``.

A run without ``--resume`` replaces an earlier local tuning job of the same name, as the
results store always did.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import search
from sm_toolkit.local.tuning.request import CONFIG, TuningConfig
from sm_toolkit.local.tuning.trials import RECORD_ATTR, TrialRecord

STUDY_FILE = "study.db"
# Study attributes: the search settings a resume must match, and warm-start bookkeeping.
_CONFIG_ATTR = "hyper_parameter_tuning_job_config"
_PARENTS_ATTR = "warm_start_trials"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_url(out_dir: Path) -> str:
    """The SQLAlchemy URL of a tuning job's study (what optuna-dashboard takes too)."""
    return f"sqlite:///{Path(out_dir).resolve() / STUDY_FILE}"


def _storage(path: Path) -> optuna.storages.RDBStorage:
    # WAL (a property of the file, so set once here) lets optuna-dashboard read while trials
    # write and saves a sync per commit; the timeout covers threads writing at once.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return optuna.storages.RDBStorage(
        storage_url(path.parent), engine_kwargs={"connect_args": {"timeout": 30}}
    )


@dataclass
class OpenedStudy:
    """A study ready for new trials, with what earlier runs of the same job left."""

    study: optuna.Study
    records: list[TrialRecord] = field(default_factory=list)  # finished trials, by index
    next_index: int = 1
    parent_trials: int = 0  # warm-start trials added by the first run
    interrupted: int = 0  # trials a killed or interrupted run left without a result
    resumed: bool = False


def open_study(
    tuning: TuningConfig, request: Mapping[str, Any], out_dir: Path, *, resume: bool
) -> OpenedStudy:
    """Create the job's study (replacing an old one), or load it for ``resume``."""
    path = out_dir / STUDY_FILE
    settings = json.dumps(request[CONFIG], sort_keys=True, default=str)
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (
            path,
            path.with_name(STUDY_FILE + "-wal"),
            path.with_name(STUDY_FILE + "-shm"),
        ):
            stale.unlink(missing_ok=True)
        study = search.make_study(tuning, storage=_storage(path))
        study.set_user_attr(_CONFIG_ATTR, settings)
        return OpenedStudy(study=study)
    if not path.exists():
        raise ConfigError(
            "--resume", tuning.job_name, f"a local tuning job that was started; no {path}"
        )
    study = search.make_study(tuning, storage=_storage(path), load_if_exists=True)
    if study.user_attrs.get(_CONFIG_ATTR) != settings:
        raise ConfigError(
            "--resume",
            tuning.job_name,
            f"the same {CONFIG} as the run being resumed (strategy, ranges, limits changed)",
        )
    return _reopen(study)


def _reopen(study: optuna.Study) -> OpenedStudy:
    opened = OpenedStudy(study=study, resumed=True)
    opened.parent_trials = int(study.user_attrs.get(_PARENTS_ATTR, 0))
    for trial in study.get_trials(deepcopy=False):
        if "parent" in trial.user_attrs:  # a warm-start parent's trial
            continue
        index = int(trial.user_attrs.get("trial_index", 0))
        opened.next_index = max(opened.next_index, index + 1)
        if RECORD_ATTR in trial.user_attrs and trial.state in _FINISHED:
            opened.records.append(TrialRecord.from_dict(trial.user_attrs[RECORD_ATTR]))
            continue
        # No record: its training job died with a killed run, or an interrupted run stopped
        # it. Not a result, so it runs again; left RUNNING, the sampler would count it as
        # pending forever.
        opened.interrupted += 1
    fail_running(study)
    opened.records.sort(key=lambda r: r.index)
    return opened


def note_parent_trials(study: optuna.Study, count: int) -> None:
    """Remember how many warm-start trials the first run added (a resume adds none)."""
    study.set_user_attr(_PARENTS_ATTR, count)


def fail_running(study: optuna.Study) -> int:
    """Mark the study's RUNNING trials FAIL (an interrupted run's); returns how many."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(running)
