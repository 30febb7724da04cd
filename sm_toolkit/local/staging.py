"""Staging a job's inputs onto its hosts, the way SageMaker does before the script starts.

Code: ``sagemaker_submit_directory`` (s3://.../sourcedir.tar.gz, or file:///dir in local mode)
into /opt/ml/code. Channels: S3 prefixes and manifests downloaded, FullyReplicated to every host
(downloaded once, hard-linked to the others) or ShardedByS3Key (keys dealt out across hosts);
local-mode ``file://`` paths copied. Nothing is written outside a host's folders: keys and
archive members that would escape are refused with a one-line reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

from sm_toolkit import contract
from sm_toolkit.errors import ToolkitError
from sm_toolkit.local.hosts import Host
from sm_toolkit.local.plan import Channel, JobPlan
from sm_toolkit.local.s3 import S3, UnsafeKeyError, copy_local, split_uri


class StagingError(ToolkitError):
    """An input could not be staged; the message is the job's FailureReason."""


def stage_code(plan: JobPlan, hosts: list[Host], s3: S3, scratch: Path) -> None:
    uri = plan.code_uri
    if not uri:
        return
    if uri.startswith("file://") or uri.startswith("/"):
        source = Path(uri.removeprefix("file://"))
        if not source.is_dir():
            raise StagingError(f"{contract.HP_SUBMIT_DIRECTORY}: {source} is not a folder")
        for host in hosts:
            shutil.copytree(
                source,
                host.opt_ml / contract.CODE_DIR,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", ".git"),
            )
        return
    if not uri.startswith("s3://"):
        raise StagingError(f"{contract.HP_SUBMIT_DIRECTORY}: {uri} is not an s3:// or file:// URI")
    archive = s3.download_file(uri, scratch / "sourcedir.tar.gz")
    for host in hosts:
        extract(archive, host.opt_ml / contract.CODE_DIR)


def extract(archive: Path, target: Path) -> None:
    """A tar.gz into ``target``; members that would land outside it are refused."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    except tarfile.FilterError as err:
        raise UnsafeKeyError(f"{archive.name}: {err}") from None


def stage_channels(plan: JobPlan, hosts: list[Host], s3: S3) -> dict[str, int]:
    """Every channel into input/data/<channel> of every host; files per channel (leader)."""
    counts = {}
    for channel in plan.channels:
        folders = [h.opt_ml / contract.INPUT_DATA_DIR / channel.name for h in hosts]
        counts[channel.name] = _stage_channel(channel, folders, s3)
    return counts


def _stage_channel(channel: Channel, folders: list[Path], s3: S3) -> int:
    if channel.uri.startswith("file://"):
        source = Path(channel.uri.removeprefix("file://"))
        if not source.exists():
            raise StagingError(f"channel {channel.name}: local path {source} does not exist")
        for folder in folders:
            copy_local(source, folder)
        return sum(1 for p in folders[0].rglob("*") if p.is_file())
    base_uri, keys = _keys(channel, s3)
    if not keys:
        raise StagingError(f"channel {channel.name}: no objects under {channel.uri}")
    if channel.distribution == "ShardedByS3Key":
        for i, folder in enumerate(folders):
            s3.download_prefix(base_uri, folder, keys=keys[i :: len(folders)])
        return len(keys[:: len(folders)])
    count = s3.download_prefix(base_uri, folders[0], keys=keys)
    for folder in folders[1:]:
        shutil.copytree(folders[0], folder, copy_function=os.link, dirs_exist_ok=True)
    return count


def _keys(channel: Channel, s3: S3) -> tuple[str, list[str]]:
    """(prefix the keys are relative to, sorted keys) of an S3Prefix or ManifestFile channel."""
    if channel.data_type == "ManifestFile":
        manifest = json.loads(s3.read(channel.uri))
        prefix = manifest[0]["prefix"]
        bucket, key_prefix = split_uri(prefix)
        return prefix, [key_prefix + rel for rel in manifest[1:]]
    return channel.uri, sorted(o["Key"] for o in s3.list(channel.uri))
