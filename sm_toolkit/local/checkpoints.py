"""Checkpoint sync for local runs, the way SageMaker does it for CheckpointConfig.

Before the job: the S3 prefix is restored into the checkpoint folder. During the job:
new or changed files are uploaded every few seconds. After it: one last pass. SageMaker
local mode refuses checkpoint_s3_uri outright (SDK issue #3099).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sm_toolkit.local.s3 import S3Stage

SYNC_SECONDS = 2.0


class CheckpointSync:
    """Mirror one or more local checkpoint folders to one S3 prefix, in the background."""

    def __init__(self, stage: S3Stage, uri: str, folders: list[Path]) -> None:
        self._stage = stage
        self._uri = uri.rstrip("/")
        self._folders = folders
        self._seen: dict[Path, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.uploads = 0

    def restore(self) -> int:
        """Download the prefix into every folder; returns the number of files per folder."""
        count = 0
        for folder in self._folders:
            count = self._stage.download_prefix(self._uri, folder)
        for folder in self._folders:  # what was restored need not be uploaded again
            for path in folder.rglob("*"):
                if path.is_file():
                    stat = path.stat()
                    self._seen[path] = (stat.st_mtime, stat.st_size)
        return count

    def start(self) -> CheckpointSync:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background loop and upload what changed since its last pass."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sync_once()

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            self.sync_once()

    def sync_once(self) -> None:
        for folder in self._folders:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                if path.name.startswith(".") or path.suffix == ".tmp":
                    continue  # a checkpoint being written (temp file, renamed when complete)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                key = (stat.st_mtime, stat.st_size)
                if self._seen.get(path) == key:
                    continue
                rel = path.relative_to(folder).as_posix()
                try:
                    self._stage.upload_file(path, f"{self._uri}/{rel}")
                except FileNotFoundError:
                    continue  # rotated away by the trainer (it keeps the newest few) meanwhile
                self._seen[path] = key
                self.uploads += 1
