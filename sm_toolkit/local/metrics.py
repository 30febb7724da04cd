"""Read metrics from training logs the way SageMaker does: each metric definition's regex
is applied to each log line and its first group is the value."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from sm_toolkit.spec import MetricDefinition


class MetricParser:
    """Feed it log lines; it returns the metric values found and keeps every series."""

    def __init__(self, definitions: Iterable[MetricDefinition]) -> None:
        self._patterns = [(d.name, re.compile(d.regex)) for d in definitions]
        self.series: dict[str, list[float]] = {}

    def feed(self, line: str) -> list[tuple[str, float]]:
        found = []
        for name, pattern in self._patterns:
            for match in pattern.finditer(line):
                try:
                    value = float(match.group(1))
                except (IndexError, ValueError):
                    continue
                if math.isfinite(value):
                    found.append((name, value))
                    self.series.setdefault(name, []).append(value)
        return found

    @property
    def final(self) -> dict[str, float]:
        """The last value of each metric (what DescribeTrainingJob's FinalMetricDataList has)."""
        return {name: values[-1] for name, values in self.series.items()}
