"""``run_local_tuning``: a CreateHyperParameterTuningJob request run on this machine,
SageMaker-style.

SageMaker local mode cannot run tuning jobs (SDK issues #1960, #4313); this runs the same
request with optuna: up to MaxParallelTrainingJobs trials at once, each trial's
CreateTrainingJob request (built as AMT builds it) run by the local engine in its own thread,
until MaxNumberOfTrainingJobs trials were launched or a completion criterion is met.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sm_toolkit.errors import ConfigError
from sm_toolkit.local.tuning import report, search, store, study_store
from sm_toolkit.local.tuning import tracking as tuning_tracking
from sm_toolkit.local.tuning.completion import CompletionTracker
from sm_toolkit.local.tuning.request import (
    TuningConfig,
    decode_value,
    is_user_hyperparameter,
    read_tuning_request,
)
from sm_toolkit.local.tuning.trials import TrialContext, TrialRecord, run_trial, trial_name
from sm_toolkit.local.tuning.warm_start import warm_start

Log = Callable[[str], None]


@dataclass(frozen=True)
class TuningResult:
    """What a local tuning job produced. ``best`` is the best Completed trial (or None)."""

    job_name: str
    status: str  # Completed | Stopped
    stop_reason: str
    best: TrialRecord | None
    trials: list[TrialRecord]
    leaderboard: list[dict[str, Any]]
    output_dir: Path
    results_path: Path
    leaderboard_csv: Path
    leaderboard_json: Path
    plots: list[Path] = field(default_factory=list)
    warm_start_trials: int = 0

    @property
    def total_epochs(self) -> int:
        return sum(t.epochs for t in self.trials)


def _default_run_job(request: dict, **kwargs: Any) -> dict:
    # Imported late: the engine pulls in the backends, which the tuner's own tests avoid.
    from sm_toolkit.local.engine import run_training_job

    return run_training_job(request, **kwargs)


MAX_SPARE_WORKERS = 4  # each is an idle interpreter of ~60 MB


def _spares_needed(request: Mapping[str, Any]) -> int:
    """Enough started interpreters for one round of parallel trials' hosts."""
    definition = request.get("TrainingJobDefinition") or {}
    resources = (
        definition.get("HyperParameterTuningResourceConfig")
        or definition.get("ResourceConfig")
        or {}
    )
    limits = request.get("HyperParameterTuningJobConfig", {}).get("ResourceLimits", {})
    parallel = int(limits.get("MaxParallelTrainingJobs", 1))
    return min(MAX_SPARE_WORKERS, parallel * int(resources.get("InstanceCount", 1)))


def _default_client() -> Any:
    import boto3

    return boto3.client("sagemaker")


def run_local_tuning(
    request: Mapping[str, Any],
    *,
    workdir: Path,
    run_job: Callable[..., dict] | None = None,
    sagemaker_client_factory: Callable[[], Any] = _default_client,
    log: Log = print,
    resume: bool = False,
    tracking: bool | None = None,
) -> TuningResult:
    """Run a CreateHyperParameterTuningJob request locally; write results.json, the
    leaderboard and plots.

    Args:
        request: the CreateHyperParameterTuningJob request (as botocore takes it), with code
            and channels the engine can reach (``sm_toolkit.aws.local_request`` makes a
            rendered spec's local).
        workdir: root for outputs; this job's live in ``<workdir>/tuning/<job name>/``
            (trials' training jobs under it), where later jobs find it as a parent.
        run_job: runs one CreateTrainingJob request and returns its DescribeTrainingJob
            document (``sm_toolkit.local.engine.run_training_job``'s signature: the request,
            then ``workdir``, ``on_line`` and ``stop_event`` keywords). By default the local
            engine's process backend, with spare interpreters started ahead for the next
            trials (``backends.worker.WorkerStock``: started workers, not a warm pool).
        sagemaker_client_factory: makes the boto3 SageMaker client used only for warm-start
            parents that are not in the local store.
        log: receives one progress line per trial start and finish, and the leaderboard.
        resume: continue the job's study (``study.db`` in its folder) left by a run that was
            killed: finished trials are kept, only the remaining ones run.
        tracking: log the tuning job to MLflow (a parent run, each trial's engine run its
            child; ``tuning/tracking.py``). Default: on when ``run_job`` is the engine's.
    """
    if run_job is None:
        from sm_toolkit.local.backends.worker import WorkerStock

        with WorkerStock(_spares_needed(request)) as stock:
            return run_local_tuning(
                request,
                workdir=workdir,
                run_job=functools.partial(_default_run_job, workers=stock),
                sagemaker_client_factory=sagemaker_client_factory,
                log=log,
                resume=resume,
                tracking=True if tracking is None else tracking,
            )
    tuning = read_tuning_request(request)
    out_dir = store.tuning_dir(Path(workdir), tuning.job_name)
    space = search.build_space(tuning.ranges)
    static = user_static_hyperparameters(tuning)
    ctx = TrialContext(
        request=request,
        run_job=run_job,
        jobs_dir=out_dir,
        objective_metric=tuning.objective.metric,
        objective_regex=tuning.objective.regex,
        prune=tuning.hyperband is not None or tuning.early_stopping == "Auto",
    )
    with _quiet_optuna():
        opened = study_store.open_study(tuning, request, out_dir, resume=resume)
        if opened.resumed:
            log(
                f"[tune] {tuning.job_name}: resuming, {len(opened.records)} trials finished"
                + (f", {opened.interrupted} interrupted (run again)" if opened.interrupted else "")
            )
        elif tuning.warm_start is not None:
            summary = warm_start(
                opened.study,
                space,
                tuning,
                static,
                workdir=Path(workdir),
                client_factory=sagemaker_client_factory,
                log=log,
            )
            study_store.note_parent_trials(opened.study, summary.added)
            opened.parent_trials = summary.added
        enabled = (run_job is _default_run_job) if tracking is None else tracking
        if enabled:
            runs = _open_runs(request, tuning, Path(workdir), opened, log)
            ctx = dataclasses.replace(ctx, tracking_parent=runs and runs.parent)
        else:
            runs = None
        try:
            records, tracker, stop_reason = _run_trials(ctx, opened, space, tuning, log, runs)
        except KeyboardInterrupt:
            if runs is not None:
                tuning_tracking.safely(runs.interrupted)
            raise
    n_parent = opened.parent_trials
    document = store.tuning_document(
        tuning=tuning,
        static_hyperparameters=static,
        records=records,
        best=tracker.best,
        status="Stopped" if stop_reason == "MaxRuntimeExceeded" else "Completed",
        stop_reason=stop_reason,
    )
    if runs is not None:
        tuning_tracking.safely(runs.finish, tracker.best, document["status"], log=log)
    return _write_outputs(document, records, tracker.best, out_dir, space, tuning, log, n_parent)


def _open_runs(request, tuning, workdir: Path, opened, log: Log):
    """The parent run (None without mlflow, or when the store fails: one line says so)."""
    try:
        runs = tuning_tracking.open_tuning_runs(
            request, tuning, workdir, opened.study, resume=opened.resumed
        )
    except ConfigError:  # a bad MLFLOW_* value in the request: the caller's mistake
        raise
    except Exception as err:  # noqa: BLE001 - a store problem never stops a tuning job
        log(f"[tune] tracking off: {type(err).__name__}: {err}"[:300])
        return None
    if runs is None:
        log("[tune] tracking off: mlflow is not installed (pip install 'sm-toolkit[tracking]')")
    elif opened.resumed:
        tuning_tracking.safely(runs.mark_interrupted, {r.name for r in opened.records}, log=log)
    return runs


def user_static_hyperparameters(tuning: TuningConfig) -> dict[str, Any]:
    """The user's static hyperparameters, decoded (SageMaker's own sagemaker_* left out)."""
    return {
        k: decode_value(v)
        for k, v in tuning.static_hyperparameters.items()
        if is_user_hyperparameter(k)
    }


def _write_outputs(document, records, best, out_dir, space, tuning, log: Log, n_parent: int):
    results = store.write_results(out_dir / store.RESULTS_FILE, document)
    maximize = tuning.objective.type == "Maximize"
    rows = report.leaderboard_rows(records, maximize=maximize, param_names=space.names)
    csv_path, json_path = report.write_leaderboard(rows, out_dir)
    log_params = [n for n, r in tuning.ranges.items() if _is_log(r)]
    plots = report.write_plots(
        records,
        out_dir / "plots",
        objective_name=tuning.objective.metric,
        maximize=maximize,
        param_names=space.names,
        log_params=log_params,
    )
    log(report.format_table(rows))
    log(
        f"[tune] {tuning.job_name}: {document['status']} ({document['stop_reason']}), "
        f"{len(records)} trials, {sum(r.epochs for r in records)} epochs"
    )
    if best is not None:
        log(
            f"[tune] best: {best.name} {tuning.objective.metric}={best.objective:.6g} "
            f"artifacts: {best.model_artifacts or '-'}"
        )
    log(f"[tune] results: {results}  leaderboard: {csv_path}  plots: {out_dir / 'plots'}")
    return TuningResult(
        job_name=tuning.job_name,
        status=document["status"],
        stop_reason=document["stop_reason"],
        best=best,
        trials=list(records),
        leaderboard=rows,
        output_dir=out_dir,
        results_path=results,
        leaderboard_csv=csv_path,
        leaderboard_json=json_path,
        plots=plots,
        warm_start_trials=n_parent,
    )


def _is_log(rng) -> bool:
    return rng.type != "categorical" and search.resolve_scaling(rng) == "Logarithmic"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """optuna logs every tell at INFO; the tuner prints its own lines instead."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _run_trials(ctx, opened: study_store.OpenedStudy, space, tuning, log: Log, runs=None):
    max_jobs = tuning.max_jobs if tuning.max_jobs is not None else float("inf")
    tracker = CompletionTracker(tuning)
    records: list[TrialRecord] = list(opened.records)
    for record in records:  # a resumed job's finished trials, replayed in launch order
        tracker.update(record)
    running: dict[Future, threading.Event] = {}
    launched, index = len(records), opened.next_index
    try:
        with ThreadPoolExecutor(max_workers=tuning.max_parallel_jobs) as pool:
            try:
                while True:
                    while (
                        tracker.reason is None
                        and launched < max_jobs
                        and (len(running) < tuning.max_parallel_jobs)
                    ):
                        future, stop = _launch(pool, ctx, opened.study, space, index, tuning, log)
                        running[future] = stop
                        launched, index = launched + 1, index + 1
                    if not running:
                        break
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
                        records.append(future.result())
                        if runs is not None:
                            tuning_tracking.safely(runs.trial_done, records[-1], log=log)
                        was_best = tracker.best
                        tracker.update(records[-1])
                        log(_finish_line(records[-1], tuning, is_best=tracker.best is not was_best))
                    if tracker.runtime_exceeded() and tracker.reason is None:
                        tracker.reason = "MaxRuntimeExceeded"
                        for stop in running.values():
                            stop.set()
            except KeyboardInterrupt:
                ctx.interrupted.set()  # stop every running trial; leaving the pool waits
                for stop in running.values():
                    stop.set()
                raise
    except KeyboardInterrupt:
        # Ctrl-C may land between asking optuna for a trial and starting it: no trial of
        # this run stays RUNNING in the study.
        study_store.fail_running(opened.study)
        raise
    stop_reason = tracker.reason or "MaxNumberOfTrainingJobsReached"
    return sorted(records, key=lambda r: r.index), tracker, stop_reason


def _launch(pool, ctx, study, space, index: int, tuning, log: Log):
    trial = study.ask(dict(space.distributions))
    tuned_values = space.decode(trial.params)
    name = trial_name(tuning.job_name, index)
    trial.set_user_attr("training_job_name", name)
    trial.set_user_attr("trial_index", index)
    stop = threading.Event()
    shown = " ".join(f"{k}={report._cell(decode_value(v))}" for k, v in tuned_values.items())
    log(f"[tune] {name} started   {shown}")
    future = pool.submit(
        run_trial,
        ctx,
        study,
        trial,
        index=index,
        name=name,
        tuned_values=tuned_values,
        stop=stop,
    )
    return future, stop


def _finish_line(record: TrialRecord, tuning, *, is_best: bool) -> str:
    objective = "-" if record.objective is None else f"{record.objective:.6g}"
    status = record.status + (" (early stopped)" if record.early_stopped else "")
    line = (
        f"[tune] {record.name} {status:<24} {tuning.objective.metric}={objective} "
        f"epochs={record.epochs} {record.seconds:.1f}s"
    )
    if record.failure_reason and record.status == "Failed":
        line += f"  reason: {record.failure_reason.splitlines()[0][:200]}"
    return line + ("  * new best" if is_best else "")
