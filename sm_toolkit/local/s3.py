"""S3 for local jobs: channels and code in, artifacts and checkpoints out.

The client honours the standard AWS settings (``AWS_ENDPOINT_URL`` pointing at a moto server
on 127.0.0.1 keeps every byte on this machine) and retries with botocore's ``standard`` retry
mode and more attempts than its default, so a flaky S3 costs time, not the job. Every key is
resolved under its target folder: a key that would land outside it (``../``) is refused.
"""

from __future__ import annotations

import os
import shutil
import threading
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from sm_toolkit.errors import ToolkitError

MAX_ATTEMPTS = 12  # botocore's standard mode backs off exponentially (up to 20 s) between them


class UnsafeKeyError(ToolkitError):
    """An S3 key (or archive member) would be written outside its target folder."""


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def safe_join(target: Path, relative: str, *, what: str) -> Path:
    """``target / relative`` if that stays inside ``target``; UnsafeKeyError otherwise."""
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or ".." in parts or not parts:
        raise UnsafeKeyError(f"{what} {relative!r} would be written outside {target}")
    return target.joinpath(*parts)


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def s3_client(region: str):
    """One S3 client per region and AWS settings for this process. Making one costs about
    0.1-0.3 s (botocore loads its models and endpoint rules), which a tuning job would pay
    per trial; clients are thread-safe. A change of any AWS_* variable gets a new one."""
    import boto3
    from botocore.config import Config

    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (region, settings)
    with _clients_lock:
        if key not in _clients:
            config = Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS})
            session = boto3.session.Session()
            _clients[key] = session.client("s3", region_name=region, config=config)
        return _clients[key]


class S3:
    def __init__(self, region: str) -> None:
        self.region = region

    @cached_property
    def client(self):
        return s3_client(self.region)

    def list(self, uri: str) -> list[dict]:
        bucket, prefix = split_uri(uri)
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            out += page.get("Contents", [])
        return out

    def download_prefix(self, uri: str, target: Path, *, keys: list[str] | None = None) -> int:
        """Every object under a prefix (or just ``keys``) into ``target``, sub-folders kept."""
        bucket, prefix = split_uri(uri)
        target.mkdir(parents=True, exist_ok=True)
        chosen = keys if keys is not None else [o["Key"] for o in self.list(uri)]
        count = 0
        for key in chosen:
            if key.endswith("/"):
                continue
            rel = key[len(prefix) :].lstrip("/") if key.startswith(prefix) else key
            dest = safe_join(target, rel or PurePosixPath(key).name, what="S3 key")
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(dest))
            count += 1
        return count

    def download_file(self, uri: str, dest: Path) -> Path:
        bucket, key = split_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(bucket, key, str(dest))
        return dest

    def read(self, uri: str) -> bytes:
        bucket, key = split_uri(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def upload_file(self, path: Path, uri: str) -> str:
        bucket, key = split_uri(uri)
        self.client.upload_file(str(path), bucket, key)
        return uri


def copy_local(source: Path, target: Path) -> None:
    """A local path as a channel: a folder's content, or one file, under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, symlinks=False)
    else:
        shutil.copy2(source, target / source.name)
