"""The optional ``tuning:`` section: SageMaker Automatic Model Tuning (AMT).

Field names follow the CreateHyperParameterTuningJob API in snake case. The cross-field
rules (Grid, Hyperband, warm start, ...) live in ``sm_toolkit.spec.rules``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scaling = Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"]
Strategy = Literal["Bayesian", "Random", "Grid", "Hyperband"]
# SageMaker tuning job names: at most 32 characters (TUNING_JOB_NAME_MAX_LENGTH in the SDK).
TUNING_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The API takes numbers as JSON, which has no NaN or infinity.
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ContinuousRange(_Strict):
    type: Literal["continuous"]
    min: Finite
    max: Finite
    scaling: Scaling = "Auto"


class IntegerRange(_Strict):
    type: Literal["integer"]
    min: int
    max: int
    scaling: Scaling = "Auto"


class CategoricalRange(_Strict):
    type: Literal["categorical"]
    # AMT sends categorical values as strings; at most 30 per range.
    values: list[str | int | float | bool] = Field(min_length=1, max_length=30)


ParameterRange = Annotated[
    ContinuousRange | IntegerRange | CategoricalRange, Field(discriminator="type")
]


class Objective(_Strict):
    metric: str = Field(min_length=1, max_length=255)
    type: Literal["Maximize", "Minimize"] = "Maximize"


class HyperbandConfig(_Strict):
    """Hyperband's resource is the number of epochs a trial may train."""

    min_resource: int = Field(ge=1)
    max_resource: int = Field(ge=1, le=20000)


class WarmStart(_Strict):
    type: Literal["IdenticalDataAndAlgorithm", "TransferLearning"]
    # The API takes 1 to 5 parent tuning jobs.
    parents: list[str] = Field(min_length=1, max_length=5)


class Completion(_Strict):
    """TuningJobCompletionCriteria: stop early when one of these holds."""

    target_objective_value: Finite | None = None
    # BestObjectiveNotImproving.MaxNumberOfTrainingJobsNotImproving: the API's minimum is 3.
    max_jobs_not_improving: int | None = Field(default=None, ge=3)
    complete_on_convergence: bool | None = None


class TuningSpec(_Strict):
    """What to tune, how to search, and when to stop."""

    job_name: str = Field(pattern=TUNING_NAME_PATTERN)
    strategy: Strategy = "Bayesian"
    objective: Objective
    ranges: dict[str, ParameterRange] = Field(min_length=1)
    max_jobs: int | None = Field(default=None, ge=1, le=10000)
    max_parallel_jobs: int = Field(default=1, ge=1, le=100)
    early_stopping: Literal["Off", "Auto"] = "Off"
    random_seed: int | None = Field(default=None, ge=0)
    hyperband: HyperbandConfig | None = None
    warm_start: WarmStart | None = None
    completion: Completion | None = None
    # ResourceLimits.MaxRuntimeInSeconds: 120 s to 15768000 s (half a year).
    max_runtime_seconds: int | None = Field(default=None, ge=120, le=15768000)

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `Off` as the boolean false; the user meant the string.
        return "Off" if value is False else value
