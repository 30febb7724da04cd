"""TEST FAKE: ``sm-toolkit serve`` with a stand-in for the local engine's TrainingJob.

Used only until ``sm_toolkit.local.engine`` exists: it honours ENGINE_API.md's interface
(start, describe, stop, wait; on_line, on_metric, on_status) without running any script.
Run as ``python endpoint_fake_engine.py --port 0 --workdir DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class FakeEvents:
    on_line: Callable | None = None
    on_metric: Callable | None = None
    on_status: Callable | None = None


class FakeJob:
    """Trains for a second (60 s with hyperparameter mode=sleep), one metric a tick."""

    def __init__(
        self,
        request: dict,
        *,
        workdir,
        backend="process",
        image=None,
        events=None,
        interrupt_after=None,
    ) -> None:
        self.request = request
        self.name = request["TrainingJobName"]
        self.events = events or FakeEvents()
        mode = request.get("HyperParameters", {}).get("mode", "ok").strip('"')
        self.seconds = 60.0 if mode == "sleep" else 1.0
        self._stop = threading.Event()
        self._done = threading.Event()
        now = dt.datetime.now(dt.timezone.utc)
        self.doc: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": "arn:fake",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "AlgorithmSpecification": request.get("AlgorithmSpecification", {}),
            "RoleArn": request["RoleArn"],
            "OutputDataConfig": request["OutputDataConfig"],
            "ResourceConfig": request.get("ResourceConfig", {}),
            "StoppingCondition": request.get("StoppingCondition", {}),
            "HyperParameters": request.get("HyperParameters", {}),
            "CreationTime": now,
            "LastModifiedTime": now,
            "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": now}],
        }

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _status(self, status: str, secondary: str) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        trans = self.doc["SecondaryStatusTransitions"]
        trans[-1]["EndTime"] = now
        trans.append({"Status": secondary, "StartTime": now})
        self.doc.update(TrainingJobStatus=status, SecondaryStatus=secondary, LastModifiedTime=now)
        if self.events.on_status:
            self.events.on_status(dict(self.doc))

    def _run(self) -> None:
        self._status("InProgress", "Training")
        if self.events.on_line:
            self.events.on_line("algo-1", "channel train: ['train.py']")
        start = time.time()
        tick = 0
        while time.time() - start < self.seconds and not self._stop.is_set():
            line = f"epoch={tick} loss={1.0 / (tick + 1):.3f}"
            if self.events.on_line:
                self.events.on_line("algo-1", line)
            if self.events.on_metric:
                self.events.on_metric("loss", 1.0 / (tick + 1), time.time())
            tick += 1
            self._stop.wait(0.2)
        now = dt.datetime.now(dt.timezone.utc)
        if tick:
            self.doc["FinalMetricDataList"] = [
                {"MetricName": "loss", "Value": 1.0 / tick, "Timestamp": now}
            ]
        self.doc.update(
            TrainingStartTime=dt.datetime.fromtimestamp(start, dt.timezone.utc), TrainingEndTime=now
        )
        self._status(
            *(("Stopped", "Stopped") if self._stop.is_set() else ("Completed", "Completed"))
        )
        self._done.set()

    def describe(self) -> dict:
        return dict(self.doc)

    def stop(self) -> None:
        if not self._done.is_set():
            self.doc["TrainingJobStatus"] = "Stopping"
        self._stop.set()

    def wait(self, timeout=None) -> dict:
        self._done.wait(timeout)
        return dict(self.doc)


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sm_toolkit.endpoint.server import ServeOptions, serve

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args()
    print("sm-toolkit serve: with the TEST FAKE engine", flush=True)
    return serve(
        ServeOptions(port=args.port, workdir=args.workdir),
        job_factory=FakeJob,
        events_factory=FakeEvents,
    )


if __name__ == "__main__":
    sys.exit(main())
