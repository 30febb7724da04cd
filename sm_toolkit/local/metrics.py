"""Metrics from training logs, read the way SageMaker reads them.

The rule (one, documented in the README): each MetricDefinition's regex is searched in each
log line; the **first** match in the line gives one value, its first capture group, parsed as
a float (values that do not parse, and NaN/inf, are skipped). So ``loss=([0-9.]+)`` on the line
``loss=0.5 val_loss=0.7`` yields 0.5, and two metrics on one line each yield their value. The
last value of each metric is its FinalMetricDataList entry.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable

from sm_toolkit import contract


class MetricParser:
    """Feed it log lines; it returns the values found and keeps every series."""

    def __init__(self, definitions: Iterable[tuple[str, str]]) -> None:
        self._patterns = [(name, re.compile(regex)) for name, regex in definitions]
        self.series: dict[str, list[float]] = {}
        self.last_seen: dict[str, float] = {}

    def feed(self, line: str) -> list[tuple[str, float]]:
        found = []
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if match is None or not match.groups():
                continue
            try:
                value = float(match.group(1))
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                found.append((name, value))
                self.series.setdefault(name, []).append(value)
                self.last_seen[name] = time.time()
        return found

    @property
    def final(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.series.items()}


_TAGGED = re.compile(r"(algo-[0-9]+) \| (.*)", re.DOTALL)


def tag_line(host: str, text: str, *, several_hosts: bool) -> str:
    """A host's log line as one stream of a job shows it: ``algo-2 | text`` when the job
    has several hosts (the engine's own lines and a single host's stay as they are)."""
    return f"{host} | {text}" if several_hosts and host != "engine" else text


def leader_text(line: str) -> str | None:
    """The text of a line from the job's first host (``algo-1``), else None; an untagged
    line (one host) is the first host's."""
    tagged = _TAGGED.fullmatch(line)
    if tagged is None:
        return line
    return tagged.group(2) if tagged.group(1) == contract.host_names(1)[0] else None
