"""Each trial's CreateTrainingJob request, built from the tuning request as SageMaker AMT
builds it.

AMT creates every trial from ``TrainingJobDefinition``: the static hyperparameters, the tuned
values as strings and ``_tuning_objective_metric`` (AMT's own, not JSON-encoded), the
algorithm without entry point or arguments, and the resource config without keep-alive. The
tuning request cannot carry Debugger rules, a TensorBoard or profiler config or a warm pool,
so trials have none of them, whatever the estimator that rendered the request had.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

TUNING_OBJECTIVE_HYPERPARAMETER = "_tuning_objective_metric"

# TrainingJobDefinition members a trial's CreateTrainingJob request takes as they are.
_AS_GIVEN = (
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "StoppingCondition",
    "CheckpointConfig",
    "EnableManagedSpotTraining",
    "Environment",
    "RetryStrategy",
    "VpcConfig",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
)
_ALGORITHM = ("TrainingImage", "TrainingInputMode", "MetricDefinitions")
_RESOURCES = ("InstanceType", "InstanceCount", "VolumeSizeInGB", "VolumeKmsKeyId")


def hyperparameter_string(value: Any) -> str:
    """A tuned value as AMT passes it: numbers in plain decimal, strings as they were sent
    (a categorical value keeps its JSON quotes when the request had them)."""
    if isinstance(value, bool):  # not a range type; a plain bool would print as True
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def trial_request(
    tuning_request: Mapping[str, Any], trial_name: str, tuned_values: Mapping[str, Any]
) -> dict[str, Any]:
    """The CreateTrainingJob request AMT makes for one trial (a new dict; pure)."""
    definition = tuning_request["TrainingJobDefinition"]
    objective = tuning_request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    hyperparameters = dict(definition.get("StaticHyperParameters") or {})
    hyperparameters.update({k: hyperparameter_string(v) for k, v in tuned_values.items()})
    hyperparameters[TUNING_OBJECTIVE_HYPERPARAMETER] = objective["MetricName"]
    algorithm = definition["AlgorithmSpecification"]
    out: dict[str, Any] = {
        "TrainingJobName": trial_name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {k: algorithm[k] for k in _ALGORITHM if k in algorithm},
        "ResourceConfig": _resources(definition),
    }
    out.update({k: definition[k] for k in _AS_GIVEN if k in definition})
    # Trials must not share mutable parts: an engine may annotate what it was given.
    return copy.deepcopy(out)


def _resources(definition: Mapping[str, Any]) -> dict[str, Any]:
    # HyperParameterTuningResourceConfig is what the SDK sends; ResourceConfig is the older
    # member. Neither reaches a trial with KeepAlivePeriodInSeconds: no warm pool in tuning.
    source = definition.get("HyperParameterTuningResourceConfig") or definition.get(
        "ResourceConfig", {}
    )
    return {k: source[k] for k in _RESOURCES if k in source}
