"""S3 staging for local runs: channels in, artifacts and checkpoints out.

The client honours the standard AWS settings, so ``AWS_ENDPOINT_URL`` pointing at a moto
server on 127.0.0.1 keeps every byte on this machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class S3Stage:
    def __init__(self, region: str) -> None:
        self.client = boto3.client("s3", region_name=region)

    def download_prefix(self, uri: str, target: Path) -> int:
        """Copy every object under an S3 prefix into ``target``, keeping sub-folders."""
        bucket, prefix = split_uri(uri)
        target.mkdir(parents=True, exist_ok=True)
        count = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
                if rel.endswith("/"):
                    continue
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(bucket, obj["Key"], str(dest))
                count += 1
        return count

    def fingerprint(self, uri: str) -> list[tuple[str, str, int]]:
        """(key, ETag, size) of every object under a prefix: changes when the data does."""
        bucket, prefix = split_uri(uri)
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            out += [(o["Key"], o["ETag"], o["Size"]) for o in page.get("Contents", [])]
        return out

    def upload_file(self, path: Path, uri: str) -> str:
        bucket, key = split_uri(uri)
        self.client.upload_file(str(path), bucket, key)
        return uri

    def upload_dir(self, folder: Path, uri: str) -> int:
        """Mirror a folder's files under an S3 prefix (what SageMaker's checkpoint sync does)."""
        count = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.upload_file(path, uri.rstrip("/") + "/" + path.relative_to(folder).as_posix())
            count += 1
        return count


def copy_local_input(source: Path, target: Path) -> None:
    """A local path as a channel: a folder's content, or one file, under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target / source.name)
