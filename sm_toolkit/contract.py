"""The SageMaker training-container contract: every name both sides agree on, in one place.

The laptop side (builders, the local engine) and the container side (runtime, trainer,
launcher) import these instead of spelling paths, variables, reserved hyperparameters or
limits themselves. Plain constants and pure functions: importing this module does
nothing. The API's own limits are botocore's SageMaker model, as data: `service_model()`
loads it once per process for every side that reads it (builders, engine, endpoint).
"""

from __future__ import annotations

import functools
import json
import re

# --- paths inside a training container (relative ones are under OPT_ML) -------------------
OPT_ML = "/opt/ml"
HYPERPARAMETERS_FILE = "input/config/hyperparameters.json"
RESOURCE_CONFIG_FILE = "input/config/resourceconfig.json"
INPUT_DATA_CONFIG_FILE = "input/config/inputdataconfig.json"
INPUT_DATA_DIR = "input/data"  # one folder per channel
MODEL_DIR = "model"  # uploaded as model.tar.gz
OUTPUT_DIR = "output"
OUTPUT_DATA_DIR = "output/data"  # uploaded as output.tar.gz
FAILURE_FILE = "output/failure"
SUCCESS_FILE = "output/success"
CODE_DIR = "code"
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"  # CheckpointConfig.LocalPath default
# Managed warm pools: a folder kept between matching jobs, and the variable that names it.
WARMPOOL_CACHE_PATH = "/opt/ml/sagemaker/warmpoolcache"
WARMPOOL_CACHE_ENV = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"

# --- limits -----------------------------------------------------------------------------
FAILURE_REASON_LIMIT = 1024  # SageMaker keeps this much of output/failure as FailureReason
STOP_GRACE_SECONDS = 120  # StopTrainingJob: SIGTERM, then SIGKILL after this long
# `train` without a running child this long: the script has ended, and what it left running
# (a daemon holding train's output pipe) is ended (the launcher; the process backend).
DETACHED_GRACE_SECONDS = 2.0

# --- environment ------------------------------------------------------------------------
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"  # sagemaker-training relocates /opt/ml with it
TRAINING_MODULE_ENV = "SAGEMAKER_TRAINING_MODULE"
PYTORCH_TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
JOB_NAME_ENV = "TRAINING_JOB_NAME"
STUDIO_LOCAL_MODE_ENV = "SM_STUDIO_LOCAL_MODE"  # sagemaker-training skips its DNS wait
# Set by sm-toolkit's builders (SageMaker itself does not tell the script these folders).
CHECKPOINT_DIR_ENV = "SM_CHECKPOINT_DIR"
TENSORBOARD_DIR_ENV = "SM_TENSORBOARD_DIR"
# Debugger rules the local engine asks the project's trainer to evaluate (comma-separated).
RULES_ENV = "SM_TOOLKIT_RULES"
# The torchrun rendezvous port the image's `train` uses instead of the toolkits' fixed 7777,
# so that two multi-host jobs on one machine do not collide.
MASTER_PORT_ENV = "SM_TOOLKIT_MASTER_PORT"
DEFAULT_MASTER_PORT = "7777"
# Tokens in the environment of every process a host (process backend) or the image's
# launcher starts, so that what leaves the process tree is still found and ended.
HOST_TOKEN_ENV = "SM_TOOLKIT_HOST_TOKEN"
LAUNCH_TOKEN_ENV = "SM_TOOLKIT_LAUNCH_TOKEN"

# --- experiment tracking: MLflow's own variable names ---------------------------------
# The tracking URI and experiment reach the container in the request's Environment (the
# builders render them there); the local engine adds the run it made for the job, so the
# code in the container logs into that run instead of starting a second one.
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
MLFLOW_RUN_ID_ENV = "MLFLOW_RUN_ID"
MLFLOW_ENV = (MLFLOW_TRACKING_URI_ENV, MLFLOW_EXPERIMENT_ENV, MLFLOW_RUN_ID_ENV)
# MLflow 3 sends usage telemetry to its own servers unless this is true; sm-toolkit sets it
# for what it runs (the CLI, local jobs), as it opts out of the SageMaker SDK's.
MLFLOW_TELEMETRY_OPT_OUT_ENV = "MLFLOW_DISABLE_TELEMETRY"
DEFAULT_EXPERIMENT = "sm-toolkit"
# The run tag that names the training job (set by the engine locally, by the trainer on AWS).
MLFLOW_JOB_NAME_TAG = "sagemaker.training_job_name"
# What a tracking URI may be: a path or file: URI, an MLflow server over HTTP(S), a
# SQLAlchemy SQLite store, Databricks, or a SageMaker managed MLflow tracking server ARN
# (resolved by the sagemaker-mlflow plugin).
TRACKING_URI_FORMS = (
    r"(?:file:)?/?[^:\s]+",
    r"https?://[^\s/]+(?:/\S*)?",
    r"sqlite:///\S+",
    r"databricks(?:://[A-Za-z0-9_.\-]+)?",
    r"arn:aws[a-z\-]*:sagemaker:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:mlflow-tracking-server/"
    r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,255}",
)
TRACKING_URI_HINT = (
    "a path, file:/path, http(s)://host[:port], sqlite:///path, databricks, or a SageMaker "
    "MLflow tracking server ARN arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>"
)


@functools.cache
def service_model():  # -> botocore.model.ServiceModel
    """botocore's SageMaker service model (imported and parsed on first use, ~0.3 s)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def tracking_uri_ok(uri: str) -> bool:
    """Whether ``uri`` is one of TRACKING_URI_FORMS (the whole string)."""
    return any(re.fullmatch(form, uri) for form in TRACKING_URI_FORMS)


def experiment_name_ok(name: str) -> bool:
    """An MLflow experiment name: not empty, no surrounding spaces, no control characters."""
    return bool(name) and name == name.strip() and all(c.isprintable() for c in name)


# --- reserved hyperparameters (sagemaker-training's framework parameters) --------------
RESERVED_PREFIX = "sagemaker_"
HP_PROGRAM = "sagemaker_program"
HP_SUBMIT_DIRECTORY = "sagemaker_submit_directory"
HP_JOB_NAME = "sagemaker_job_name"
HP_REGION = "sagemaker_region"
HP_TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
HP_SMDDP = "sagemaker_distributed_dataparallel_enabled"
HP_PYTORCH_DDP = "sagemaker_pytorch_ddp_enabled"
HP_MPI = "sagemaker_mpi_enabled"
HP_PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
HP_TUNING_OBJECTIVE = "_tuning_objective_metric"  # added by AMT to every trial

# --- SDK v3 launch contract (ModelTrainer) ---------------------------------------------
V3_DRIVERS_CHANNEL = "sm_drivers"
V3_CODE_CHANNEL = "code"


def split_hyperparameters(hps: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the user's, SageMaker's and AMT's own) hyperparameters, each as the script receives
    it: the JSON string quotes of the SDK's encoding removed (``'"adam"'`` -> ``adam``)."""
    user, own = {}, {}
    for key, raw in hps.items():
        value = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError:
                pass
        value = value if isinstance(value, str) else raw
        ours = key.startswith((RESERVED_PREFIX, "_"))  # sagemaker_*, _tuning_objective_metric
        (own if ours else user)[key] = value
    return user, own


def is_pass_through(cmdline: list[str]) -> bool:
    """A process that only starts the training and pipes its output (SDK v3's ``bash -c
    sm_train.sh`` and its driver scripts): a stop signal for the job is not meant for it,
    since if it died, the script's last lines (and its exit) would go unseen."""
    text = " ".join(cmdline)
    return f"/{V3_DRIVERS_CHANNEL}/" in text or (
        bool(cmdline) and cmdline[0].endswith("bash") and "-c" in cmdline[1:2]
    )


# --- logs and metrics -------------------------------------------------------------------
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"

# The SageMaker Python SDK's own config switch for its telemetry calls.
SDK_TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def with_telemetry_opt_out(config: dict | None, opt_out: bool) -> dict | None:
    """A user's SageMaker SDK config (either generation), with telemetry opted out when asked."""
    config = dict(config or {})
    if not opt_out:
        return config or None
    config.setdefault("SchemaVersion", "1.0")
    modules = config.setdefault("SageMaker", {}).setdefault("PythonSDK", {})
    modules.setdefault("Modules", {})["TelemetryOptOut"] = True
    return config


def host_names(count: int) -> list[str]:
    """SageMaker's names for the instances of a job: algo-1 ... algo-N."""
    return [f"algo-{i + 1}" for i in range(count)]
