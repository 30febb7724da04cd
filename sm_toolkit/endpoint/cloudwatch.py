"""A job's log lines and metric values, written where SageMaker writes them.

Log lines go to CloudWatch Logs (group ``/aws/sagemaker/TrainingJobs``, one stream per host
named ``<job>/<host>-<epoch seconds>``) and metric values to CloudWatch metrics (namespace
``/aws/sagemaker/TrainingJobs``, dimension ``TrainingJobName``), both in the moto backends of
this process, which the endpoint serves to clients: the SDK's ``logs_for_job``,
``aws logs tail`` and ``TrainingJobAnalytics`` read them as they read AWS.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from moto.cloudwatch.models import cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.logs.models import logs_backends

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
METRIC_NAMESPACE = "/aws/sagemaker/TrainingJobs"


class JobTelemetry:
    """Writes one job's logs and metrics; its methods are the engine's event callbacks."""

    def __init__(self, job_name: str, region: str, account: str = DEFAULT_ACCOUNT_ID) -> None:
        self.job_name = job_name
        self._logs = logs_backends[account][region]
        self._metrics = cloudwatch_backends[account][region]
        self._streams: dict[str, str] = {}
        # moto's stores are not thread safe, and every host's reader thread calls us.
        self._lock = threading.Lock()
        self._last_ms: dict[str, int] = {}
        with self._lock:
            if LOG_GROUP not in self._logs.groups:
                self._logs.create_log_group(LOG_GROUP, tags={})

    def stream_name(self, host: str) -> str:
        """The host's stream, made on its first line (SageMaker adds the host's start time)."""
        if host not in self._streams:
            name = f"{self.job_name}/{host}-{int(time.time())}"
            if name not in self._logs.groups[LOG_GROUP].streams:
                self._logs.create_log_stream(LOG_GROUP, name)
            self._streams[host] = name
        return self._streams[host]

    def on_line(self, host: str, line: str) -> None:
        """One log line of one host."""
        with self._lock:
            stream = self.stream_name(host)
            # CloudWatch orders by timestamp; keep a host's lines in arrival order.
            stamp = max(int(time.time() * 1000), self._last_ms.get(stream, 0))
            self._last_ms[stream] = stamp
            self._logs.put_log_events(
                LOG_GROUP, stream, [{"timestamp": stamp, "message": line.rstrip("\n")}]
            )

    def on_metric(self, name: str, value: float, when: float) -> None:
        """One metric value parsed from the log by the request's MetricDefinitions."""
        datum = {
            "MetricName": name,
            "Value": float(value),
            # moto compares naive UTC datetimes (its requests parse to those)
            "Timestamp": dt.datetime.fromtimestamp(when, tz=dt.timezone.utc).replace(tzinfo=None),
            "Dimensions": [{"Name": "TrainingJobName", "Value": self.job_name}],
            "Unit": "None",
        }
        with self._lock:
            self._metrics.put_metric_data(METRIC_NAMESPACE, [datum])
