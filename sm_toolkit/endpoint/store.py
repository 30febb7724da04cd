"""The endpoint's records: training jobs, tuning jobs and tags in one SQLite file.

Documents are kept as the service returns them (JSON, timestamps in epoch seconds), so a
restarted server answers Describe and List for old jobs exactly as it did before.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sm_toolkit.endpoint.errors import ResourceInUse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS training_jobs (
    name TEXT PRIMARY KEY, arn TEXT NOT NULL, tuning_job TEXT,
    created REAL NOT NULL, request TEXT NOT NULL, document TEXT NOT NULL,
    engine_record TEXT);
CREATE TABLE IF NOT EXISTS tuning_jobs (
    name TEXT PRIMARY KEY, arn TEXT NOT NULL,
    created REAL NOT NULL, request TEXT NOT NULL, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    arn TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (arn, key));
"""

# Statuses that cannot outlive the server that ran the job.
_LIVE = ("InProgress", "Stopping")


class Store:
    """Thread-safe access to ``<workdir>/endpoint.sqlite``."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / "endpoint.sqlite"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # training jobs
    def add_training(
        self,
        name: str,
        arn: str,
        request: dict,
        document: dict,
        tuning_job: str | None = None,
        engine_record: str | None = None,
    ) -> None:
        """Record a new job; ResourceInUse if the name is taken (names are unique per
        account and region, whatever their case on the service: compare as given).
        ``engine_record`` is the engine's own saved document of the job, which changes
        after the job when its warm pool is reused or ends."""
        try:
            self._run(
                "INSERT INTO training_jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    arn,
                    tuning_job,
                    time.time(),
                    json.dumps(request),
                    json.dumps(document),
                    engine_record,
                ),
            )
        except sqlite3.IntegrityError:
            raise ResourceInUse(f"Training job {arn} already exists") from None

    def set_training(self, name: str, document: dict) -> None:
        """Replace a job's document."""
        self._run(
            "UPDATE training_jobs SET document = ? WHERE name = ?", (json.dumps(document), name)
        )

    def training(self, name: str) -> dict | None:
        """A job's document, or None."""
        rows = self._run("SELECT document FROM training_jobs WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def engine_record(self, name: str) -> str | None:
        """Where the engine keeps the job's document, or None."""
        rows = self._run("SELECT engine_record FROM training_jobs WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def training_request(self, name: str) -> dict | None:
        """The CreateTrainingJob request a job was made from, or None."""
        rows = self._run("SELECT request FROM training_jobs WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def trainings(self, tuning_job: str | None = None) -> list[dict]:
        """Every job's document (or a tuning job's trials), oldest first."""
        if tuning_job is None:
            rows = self._run("SELECT document FROM training_jobs ORDER BY created")
        else:
            rows = self._run(
                "SELECT document FROM training_jobs WHERE tuning_job = ? ORDER BY created",
                (tuning_job,),
            )
        return [json.loads(r[0]) for r in rows]

    # tuning jobs
    def add_tuning(self, name: str, arn: str, request: dict, document: dict) -> None:
        """Record a new tuning job; ResourceInUse if the name is taken."""
        try:
            self._run(
                "INSERT INTO tuning_jobs VALUES (?, ?, ?, ?, ?)",
                (name, arn, time.time(), json.dumps(request), json.dumps(document)),
            )
        except sqlite3.IntegrityError:
            raise ResourceInUse(f"Hyperparameter tuning job {arn} already exists") from None

    def set_tuning(self, name: str, document: dict) -> None:
        """Replace a tuning job's document."""
        self._run(
            "UPDATE tuning_jobs SET document = ? WHERE name = ?", (json.dumps(document), name)
        )

    def tuning(self, name: str) -> dict | None:
        """A tuning job's document, or None."""
        rows = self._run("SELECT document FROM tuning_jobs WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def tunings(self) -> list[dict]:
        """Every tuning job's document, oldest first."""
        return [
            json.loads(r[0]) for r in self._run("SELECT document FROM tuning_jobs ORDER BY created")
        ]

    def arn_exists(self, arn: str) -> bool:
        """Whether a training or tuning job has this ARN."""
        return bool(
            self._run(
                "SELECT 1 FROM training_jobs WHERE arn = ? UNION "
                "SELECT 1 FROM tuning_jobs WHERE arn = ?",
                (arn, arn),
            )
        )

    # tags
    def add_tags(self, arn: str, tags: list[dict[str, str]]) -> None:
        """Add or overwrite tags of a resource."""
        for tag in tags:
            self._run(
                "INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                (arn, tag["Key"], tag.get("Value", "")),
            )

    def tags(self, arn: str) -> list[dict[str, str]]:
        """A resource's tags, in key order."""
        rows = self._run("SELECT key, value FROM tags WHERE arn = ? ORDER BY key", (arn,))
        return [{"Key": k, "Value": v} for k, v in rows]

    def delete_tags(self, arn: str, keys: list[str]) -> None:
        """Remove tags of a resource by key (absent keys are ignored, as on the service)."""
        for key in keys:
            self._run("DELETE FROM tags WHERE arn = ? AND key = ?", (arn, key))

    def end_orphans(self, reason: str) -> list[str]:
        """Jobs recorded as running by a server that is gone: mark them Stopped."""
        ended = []
        for doc in self.trainings():
            if doc.get("TrainingJobStatus") in _LIVE:
                self.set_training(doc["TrainingJobName"], _stopped(doc, reason))
                ended.append(doc["TrainingJobName"])
        for doc in self.tunings():
            if doc.get("HyperParameterTuningJobStatus") in _LIVE:
                doc = {
                    **doc,
                    "HyperParameterTuningJobStatus": "Stopped",
                    "HyperParameterTuningEndTime": time.time(),
                }
                self.set_tuning(doc["HyperParameterTuningJobName"], doc)
        return ended


def _stopped(doc: dict[str, Any], reason: str) -> dict[str, Any]:
    now = time.time()
    transitions = list(doc.get("SecondaryStatusTransitions") or [])
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1] = {**transitions[-1], "EndTime": now}
    transitions.append(
        {"Status": "Stopped", "StartTime": now, "EndTime": now, "StatusMessage": reason}
    )
    return {
        **doc,
        "TrainingJobStatus": "Stopped",
        "SecondaryStatus": "Stopped",
        "SecondaryStatusTransitions": transitions,
        "TrainingEndTime": now,
        "LastModifiedTime": now,
    }
