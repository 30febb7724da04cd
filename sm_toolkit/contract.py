"""The SageMaker training-container contract: every name both sides agree on, in one place.

The laptop side (builders, the local engine) and the container side (runtime, trainer,
launcher) import these instead of spelling paths, variables, reserved hyperparameters or
limits themselves. Plain constants only: importing this module does nothing.
"""

from __future__ import annotations

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
