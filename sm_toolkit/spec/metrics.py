"""Metric definitions: the regexes SageMaker uses to read metrics from training logs.

The project's training code prints lines such as
``[metrics] epoch=3 train:loss=0.41230 val:accuracy=0.96120``; the definition for a
metric named N is ``N=(<number>)``. SageMaker, the local runner and local tuning all
read the same lines with the same regexes.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml

NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_regex(name: str) -> str:
    """The metric-definition regex for a metric the project's entrypoints print."""
    return re.escape(name) + "=" + NUMBER


@cache
def entrypoint_catalog() -> dict[str, dict]:
    """The project's own entrypoints and the metrics each declares (data/entrypoints.yaml)."""
    text = resources.files("sm_toolkit").joinpath("data/entrypoints.yaml").read_text()
    return yaml.safe_load(text)


def default_metric_definitions(entry_point: str) -> list[dict[str, str]]:
    """Name/regex pairs for one of the project's entrypoints (empty for a user's script)."""
    entry = entrypoint_catalog().get(entry_point)
    if entry is None:
        return []
    return [{"name": n, "regex": metric_regex(n)} for n in entry["metrics"]]
