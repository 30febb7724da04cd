"""MLflow logging from inside the training container: rank 0 only, and only when the job's
environment names a tracking URI (MLFLOW_TRACKING_URI, rendered into the request's
Environment from the spec's ``tracking`` field).

Two cases, told apart by MLFLOW_RUN_ID:

- **the local engine made the run** (it sets MLFLOW_RUN_ID): the engine logs what it sees from
  outside (hyperparameters, the metric-definition values, plots, the model.tar.gz), so this
  side adds only what the container alone knows: the model's size and family, the
  parallelism, world size, device, and the torch version. Nothing is logged twice.
- **no run yet** (a job on SageMaker): this side starts the run (named after the job) and logs
  all of it: the hyperparameters, every epoch's metrics with step = epoch, the plots and
  metrics.json, and the model files. A SageMaker managed MLflow ARN as the URI needs the
  ``sagemaker-mlflow`` plugin (in the image).

The model is logged as its files (model.pt, model_config.json), not with MLflow's PyTorch
flavour: in MLflow 3 the flavour defaults to the pt2 format, which needs an input example
per model family, and it cost 3.3 s more a job here (measured; README, Tracking).
Optional: without mlflow importable the trainer works as before, after one warning line.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_toolkit import contract

MODEL_FILES = ("model.pt", "model_config.json")


class RunLog:
    """The run this container logs to; made by :func:`open_run` (None when not tracking).

    MLflow is imported, and an owned run started, in a background thread while the model
    trains (the import alone costs 1-3 s a job); everything is logged at the end."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.uri = environ[contract.MLFLOW_TRACKING_URI_ENV]
        self.run_id = environ.get(contract.MLFLOW_RUN_ID_ENV) or None
        self.owned = self.run_id is None  # no engine made the run: SageMaker's case
        experiment = environ.get(contract.MLFLOW_EXPERIMENT_ENV)
        self._experiment = experiment or contract.DEFAULT_EXPERIMENT
        self._job = environ.get(contract.JOB_NAME_ENV) or "local"
        self._facts: dict[str, str] = {}
        self._client: Any = None
        self._problem: str | None = None
        self._ready = threading.Thread(target=self._connect, name="mlflow-connect", daemon=True)
        self._ready.start()

    def _connect(self) -> None:
        try:
            import mlflow
        except ImportError:
            self._problem = f"mlflow is not installed; not logging to {self.uri}"
            return
        try:
            self._client = mlflow.MlflowClient(tracking_uri=self.uri)
            if self.owned:
                found = self._client.get_experiment_by_name(self._experiment)
                experiment = (
                    found.experiment_id if found else self._client.create_experiment(
                        self._experiment)
                )  # fmt: skip
                tags = {contract.MLFLOW_JOB_NAME_TAG: self._job}
                run = self._client.create_run(experiment, run_name=self._job, tags=tags)
                self.run_id = run.info.run_id
        except Exception as err:  # noqa: BLE001 - an unreachable store must not stop training
            self._client = None
            self._problem = f"not logging to {self.uri}: {type(err).__name__}: {err}"

    def facts(self, facts: Mapping[str, Any]) -> None:
        """Tags about the job that only the container knows (logged at the end)."""
        self._facts.update({f"sm-toolkit.{k}": str(v) for k, v in facts.items()})

    def finish(self, history: list[dict[str, float]], base_dir: Path, model_dir: Path,
               output_dir: Path) -> None:  # fmt: skip
        """The facts; for an owned run also the hyperparameters, metrics, plots and model."""
        self._ready.join(timeout=120)  # the import and the run, made while the model trained
        if self._client is None:
            print(f"[tracking] {self._problem or 'MLflow not ready'}"[:300], file=sys.stderr)
            return
        from mlflow.entities import RunTag

        tags = [RunTag(k, v) for k, v in self._facts.items()]
        self._client.log_batch(self.run_id, tags=tags)
        if self.owned:
            self._log_everything(history, base_dir, model_dir, output_dir)
            self._client.set_terminated(self.run_id, "FINISHED")

    def _log_everything(self, history, base_dir: Path, model_dir: Path, output_dir: Path):
        from mlflow.entities import Metric, Param

        hps_file = base_dir / contract.HYPERPARAMETERS_FILE
        raw = json.loads(hps_file.read_text()) if hps_file.is_file() else {}
        params, _ = contract.split_hyperparameters({k: str(v) for k, v in raw.items()})
        metrics = [
            Metric(name, float(value), 0, step)
            for step, epoch in enumerate(history, start=1)
            for name, value in epoch.items()
            if isinstance(value, int | float) and name != "epoch"
        ]
        self._client.log_batch(
            self.run_id, metrics=metrics[:1000], params=[Param(k, v) for k, v in params.items()]
        )
        for path in sorted(output_dir.glob("*")):
            if path.is_file() and path.suffix in (".png", ".json"):
                self._client.log_artifact(self.run_id, str(path), artifact_path="output")
        for name in MODEL_FILES:
            if (model_dir / name).is_file():
                self._client.log_artifact(self.run_id, str(model_dir / name), "model")


def open_run(environ: Mapping[str, str], is_main: bool) -> RunLog | None:
    """The run to log to, on rank 0 with a tracking URI; else None. Returns at once."""
    if not environ.get(contract.MLFLOW_TRACKING_URI_ENV) or not is_main:
        return None
    return RunLog(environ)


def safely(action, *args: Any) -> None:
    """Run a logging step; a failure is one line, never the job's."""
    try:
        action(*args)
    except Exception as err:  # noqa: BLE001
        print(f"[tracking] {type(err).__name__}: {err}"[:300], file=sys.stderr)
