"""The job spec: one YAML file describes one SageMaker PyTorch training job.

Every section is a small frozen model that rejects unknown keys. Field-level limits
(ranges, patterns) are the service's own, from the CreateTrainingJob API reference;
rules that relate several fields live in ``sm_toolkit.spec.rules``.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from sm_toolkit.spec.distribution import Distribution, NoDistribution
from sm_toolkit.spec.tuning import TuningSpec

# Patterns from the SageMaker API reference (TrainingJobName, RoleArn, ChannelName, ...).
JOB_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
ROLE_ARN_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9\-]+\.[a-z0-9]+$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"
CHANNEL_PATTERN = r"^[A-Za-z0-9\.\-_]{1,64}$"
ENV_KEY_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]{0,511}$"

# What each pattern means, for error messages a person can act on.
PATTERN_HINTS = {
    JOB_NAME_PATTERN: "1-63 letters, digits and hyphens, starting with a letter or digit",
    ROLE_ARN_PATTERN: "a full IAM role ARN like arn:aws:iam::123456789012:role/Name",
    S3_URI_PATTERN: "an S3 URI like s3://bucket/prefix",
    INSTANCE_TYPE_PATTERN: "a SageMaker instance type like ml.c5.xlarge",
    REGION_PATTERN: "an AWS region like us-east-1",
}

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceSpec(_Strict):
    type: str = Field(pattern=INSTANCE_TYPE_PATTERN)
    count: int = Field(default=1, ge=1, le=100)
    volume_size_gb: int = Field(default=30, ge=1, le=16384)


class SpotSpec(_Strict):
    """Managed spot training; the job may wait this long in total for capacity."""

    max_wait_seconds: int = Field(ge=1, le=2419200)


class CheckpointSpec(_Strict):
    """SageMaker syncs ``local_path`` in the container with ``s3_uri`` during the job."""

    s3_uri: str = Field(pattern=S3_URI_PATTERN)
    local_path: str = Field(default="/opt/ml/checkpoints", pattern=r"^/.*")


class WarmPoolSpec(_Strict):
    """Managed warm pool: keep the instances this long after the job for the next one."""

    keep_alive_seconds: int = Field(ge=0, le=3600)


class MetricDefinition(_Strict):
    """One metric read from the training log: the regex's one group is the value.
    The SDK's own spelling (``Name``/``Regex``, as in ``metric_definitions``) is accepted."""

    name: str = Field(min_length=1, max_length=255, validation_alias=AliasChoices("name", "Name"))
    regex: str = Field(
        min_length=1, max_length=500, validation_alias=AliasChoices("regex", "Regex")
    )


class TensorBoardSpec(_Strict):
    s3_output_path: str = Field(pattern=S3_URI_PATTERN)
    local_path: str = Field(default="/opt/ml/output/tensorboard", pattern=r"^/.*")


class TrackingSpec(_Strict):
    """Where the job's MLflow run goes, locally and on SageMaker: rendered into the request's
    Environment as MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME (rules: ``tracking-uri``,
    ``tracking-experiment``). Without it, local jobs log to the work folder's own store."""

    uri: str | None = Field(default=None, max_length=512)
    experiment: str | None = Field(default=None, max_length=512)


class JobSpec(_Strict):
    """One training job (and, with ``tuning``, the tuning job that runs it many times).

    ``entry_point`` is either one of the project's entrypoints (``train_cnn.py``,
    ``train_rnn.py``, ``train_moe.py``; leave ``source_dir`` empty) or the user's own
    script inside ``source_dir``. The loader fills ``source_dir`` and ``metrics`` for the
    project's entrypoints, so a loaded spec is complete.
    """

    name: str = Field(pattern=JOB_NAME_PATTERN)
    entry_point: str = Field(pattern=r"^[A-Za-z0-9._][A-Za-z0-9._+\-/]*$")
    source_dir: str | None = None
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict, max_length=100)
    image_uri: str = Field(min_length=1, max_length=255)
    role: str = Field(pattern=ROLE_ARN_PATTERN)
    region: str = Field(default="us-east-1", pattern=REGION_PATTERN)
    instance: InstanceSpec
    max_run_seconds: int = Field(default=86400, ge=1, le=2419200)
    max_retry_attempts: int | None = Field(default=None, ge=1, le=30)
    spot: SpotSpec | None = None
    distribution: Distribution = Field(default_factory=NoDistribution)
    checkpoint: CheckpointSpec | None = None
    warm_pool: WarmPoolSpec | None = None
    inputs: dict[str, str] = Field(default_factory=dict, max_length=20)
    output_path: str = Field(pattern=S3_URI_PATTERN)
    environment: dict[str, str] = Field(default_factory=dict, max_length=100)
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)
    metrics: list[MetricDefinition] = Field(default_factory=list, max_length=40)
    rules: list[str] = Field(default_factory=list, max_length=20)
    tensorboard: TensorBoardSpec | None = None
    tracking: TrackingSpec | None = None
    tuning: TuningSpec | None = None

    @property
    def bucket(self) -> str:
        """The S3 bucket of ``output_path`` (also where the source code is staged)."""
        return self.output_path[len("s3://") :].split("/", 1)[0]
