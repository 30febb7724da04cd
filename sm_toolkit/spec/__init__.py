"""The job spec: typed, validated, loaded from YAML. Imports nothing else of ours
but the error hierarchy."""

from sm_toolkit.spec.distribution import DISTRIBUTION_TYPES, Distribution
from sm_toolkit.spec.job import (
    CheckpointSpec,
    InstanceSpec,
    JobSpec,
    MetricDefinition,
    SpotSpec,
    TensorBoardSpec,
    WarmPoolSpec,
)
from sm_toolkit.spec.loader import entrypoints_dir, examples_dir, load_spec, parse_spec
from sm_toolkit.spec.metrics import metric_regex
from sm_toolkit.spec.rules import RULES, notices
from sm_toolkit.spec.tuning import (
    CategoricalRange,
    Completion,
    ContinuousRange,
    HyperbandConfig,
    IntegerRange,
    Objective,
    TuningSpec,
    WarmStart,
)

__all__ = [
    "DISTRIBUTION_TYPES",
    "RULES",
    "CategoricalRange",
    "CheckpointSpec",
    "Completion",
    "ContinuousRange",
    "Distribution",
    "HyperbandConfig",
    "InstanceSpec",
    "IntegerRange",
    "JobSpec",
    "MetricDefinition",
    "Objective",
    "SpotSpec",
    "TensorBoardSpec",
    "TuningSpec",
    "WarmPoolSpec",
    "WarmStart",
    "entrypoints_dir",
    "examples_dir",
    "load_spec",
    "metric_regex",
    "notices",
    "parse_spec",
]
