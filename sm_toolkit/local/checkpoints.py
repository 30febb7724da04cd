"""Checkpoint sync for local jobs, the way SageMaker does it for CheckpointConfig.

Before the job the S3 prefix is restored into every host's checkpoint folder; while it runs,
new or changed files are uploaded every few seconds; after it, one last pass. An S3 error
does not end the sync: the file is tried again on the next pass, and what could not be
uploaded in the end is reported (the engine puts it in the job's result), never lost silently.
SageMaker local mode refuses checkpoint_s3_uri outright (SDK issue #3099).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sm_toolkit.local.s3 import S3

SYNC_SECONDS = 2.0


@dataclass
class SyncReport:
    uploaded: int = 0
    errors: int = 0
    pending: list[str] = field(default_factory=list)  # files not uploaded in the end
    last_error: str | None = None


class CheckpointSync:
    """Mirror the checkpoint folders of a job's hosts to one S3 prefix, in the background."""

    def __init__(self, s3: S3, uri: str, folders: list[Path]) -> None:
        self._s3 = s3
        self._uri = uri.rstrip("/")
        self._folders = folders
        self._seen: dict[Path, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="checkpoint-sync")
        self._lock = threading.Lock()
        self.report = SyncReport()

    def restore(self) -> int:
        """Download the prefix into every folder; returns the number of files restored."""
        count = 0
        for folder in self._folders:
            count = self._s3.download_prefix(self._uri + "/", folder)
        for folder in self._folders:  # what was restored need not be uploaded again
            for path in folder.rglob("*"):
                if path.is_file():
                    stat = path.stat()
                    self._seen[path] = (stat.st_mtime, stat.st_size)
        return count

    def start(self) -> CheckpointSync:
        self._thread.start()
        return self

    def stop(self) -> SyncReport:
        """Stop the loop, upload what changed since its last pass, and report."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.report.pending = self.sync_once()
        return self.report

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            self.sync_once()

    def sync_once(self) -> list[str]:
        """One pass over every folder; returns the files that failed to upload."""
        failed = []
        with self._lock:
            for folder in self._folders:
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    if path.name.startswith(".") or path.suffix == ".tmp":
                        continue  # a checkpoint being written (renamed into place when whole)
                    rel = path.relative_to(folder).as_posix()
                    if not self._upload(path, f"{self._uri}/{rel}"):
                        failed.append(rel)
        return failed

    def _upload(self, path: Path, uri: str) -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return True  # rotated away by the trainer meanwhile
        key = (stat.st_mtime, stat.st_size)
        if self._seen.get(path) == key:
            return True
        try:
            self._s3.upload_file(path, uri)
        except FileNotFoundError:
            return True
        except Exception as err:  # noqa: BLE001 - any S3 error: keep syncing, report it
            self.report.errors += 1
            self.report.last_error = f"{type(err).__name__}: {err}"[:300]
            return False
        self._seen[path] = key
        self.report.uploaded += 1
        return True
