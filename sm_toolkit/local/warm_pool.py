"""Managed warm pools, with SageMaker's semantics.

A job that ends with KeepAlivePeriodInSeconds > 0 leaves its hosts **Available** until the
keep-alive runs out (then **Terminated**). The next job whose resource settings match
(instance type and count, volume, role, network settings; locally also the image) takes the
pool: its own WarmPoolStatus is **InUse** while it runs, the old job's becomes **Reused**
(ReusedByJob), and the persistent cache folder (/opt/ml/sagemaker/warmpoolcache, named by
SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY) carries over. Code, hyperparameters and data are
not part of the match: changing them between jobs is what warm pools are for.

Pools are files under ``<workdir>/warm-pools/``, so a later ``sm-toolkit`` process finds
them; taking one is an atomic rename, so two jobs never take the same pool.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_toolkit.local import record
from sm_toolkit.local.plan import JobPlan


def match_key(plan: JobPlan, backend: str) -> str:
    from sm_toolkit.local.hosts import mapped_paths  # the container paths a host mounts

    doc = {"backend": backend, "paths": mapped_paths(plan), **plan.pool_key}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Pool:
    """A warm pool held by one job: its cache folders and what the backend kept."""

    dir: Path  # moves between available/, in-use/ and ending/ (atomic renames)
    job_name: str
    kept: dict[str, Any]
    cache: Path  # the persistent cache folders; stays put for the pool's whole life

    def cache_dir(self, host: str) -> Path:
        path = self.cache / host
        path.mkdir(parents=True, exist_ok=True)
        return path


def _pools(workdir: Path) -> Path:
    return workdir / "warm-pools"


def new_pool(workdir: Path, plan: JobPlan, backend: str) -> Pool:
    """A pool for a job that has none to reuse (made when the job starts)."""
    key = match_key(plan, backend)
    path = _pools(workdir) / "in-use" / f"{key}-{plan.name}"
    path.mkdir(parents=True, exist_ok=True)
    return Pool(path, plan.name, {}, _pools(workdir) / "caches" / f"{key}-{plan.name}")


def take(workdir: Path, plan: JobPlan, backend: str) -> tuple[Pool | None, list[Pool]]:
    """An Available matching pool for this job (marked taken), and the expired pools found
    on the way (to be ended by the backend)."""
    key = match_key(plan, backend)
    root = _pools(workdir) / "available"
    expired, taken = [], None
    for entry in sorted(root.glob("*")) if root.is_dir() else []:
        meta = _read(entry)
        if meta is None:
            continue
        target = _pools(workdir) / "in-use" / f"{meta['key']}-{plan.name}"
        if meta["expires_at"] < time.time():
            if _claim(entry, _pools(workdir) / "ending" / entry.name):
                expired.append(_pool(_pools(workdir) / "ending" / entry.name, meta))
            continue
        if taken is None and meta["key"] == key and _claim(entry, target):
            taken = _pool(target, meta)
    return taken, expired


def release(workdir: Path, pool: Pool, plan: JobPlan, backend: str, kept: dict) -> float:
    """Leave the pool Available after the job, until now + keep-alive; returns the expiry."""
    expires = time.time() + plan.keep_alive_seconds
    meta = {
        "key": match_key(plan, backend),
        "job": plan.name,
        "expires_at": expires,
        "kept": kept,
        "cache": str(pool.cache),
    }
    (pool.dir / "pool.json").write_text(json.dumps(meta))
    target = _pools(workdir) / "available" / f"{int(expires * 1000)}-{plan.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(pool.dir, target)
    pool.dir = target
    return expires


def end(pool: Pool) -> None:
    shutil.rmtree(pool.dir, ignore_errors=True)
    shutil.rmtree(pool.cache, ignore_errors=True)


def set_keep_alive(workdir: Path, job_name: str, seconds: int) -> Pool | None:
    """UpdateTrainingJob on a finished job's Available pool: a new keep-alive from now (0
    ends it). Returns the pool when it is to end now."""
    root = _pools(workdir) / "available"
    for entry in sorted(root.glob(f"*-{job_name}")) if root.is_dir() else []:
        meta = _read(entry)
        if meta is None or meta["job"] != job_name:
            continue
        meta["expires_at"] = time.time() + seconds
        (entry / "pool.json").write_text(json.dumps(meta))
        if seconds == 0 and _claim(entry, _pools(workdir) / "ending" / entry.name):
            return _pool(_pools(workdir) / "ending" / entry.name, meta)
        return None
    return None


def mark_job(workdir: Path, job_name: str, status: str, reused_by: str | None = None) -> None:
    """Change the WarmPoolStatus of a finished job's saved document."""
    path = workdir / "jobs" / job_name / "describe.json"
    if not path.is_file():
        return
    doc = record.load(path)
    pool = doc.setdefault("WarmPoolStatus", {})
    pool["Status"] = status
    if reused_by:
        pool["ReusedByJob"] = reused_by
    record.save(doc, path)


def _claim(source: Path, target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError:  # another job took it first
        return False
    return True


def _read(entry: Path) -> dict[str, Any] | None:
    try:
        return json.loads((entry / "pool.json").read_text())
    except (OSError, ValueError):
        return None


def _pool(path: Path, meta: dict[str, Any]) -> Pool:
    return Pool(path, meta["job"], meta.get("kept", {}), Path(meta["cache"]))
