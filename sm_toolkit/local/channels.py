"""Stage a job's input channels into a folder, the same way for both local backends.

S3 prefixes are downloaded, local paths copied, and with a warm pool (keep-alive > 0) the
channels of an earlier matching job are hard-linked instead and kept for the next one.
"""

from __future__ import annotations

from pathlib import Path

from sm_toolkit.errors import LocalRunError
from sm_toolkit.local.s3 import S3Stage, copy_local_input
from sm_toolkit.local.warm_pool import WarmPool, pool_key
from sm_toolkit.spec import JobSpec


def stage_channels(spec: JobSpec, stage: S3Stage, workdir: Path, target: Path) -> str | None:
    """Every channel into ``target/<channel>``; returns the warm-pool status (``Reused``,
    ``Available``, or None without a warm pool). The pool is keyed on ``spec`` as given, so
    a caller running another image passes a spec carrying that image."""
    pool = None
    keep_alive = spec.warm_pool.keep_alive_seconds if spec.warm_pool else 0
    if keep_alive > 0 and spec.inputs:
        prints = {
            c: stage.fingerprint(u) if u.startswith("s3://") else _local_print(Path(u))
            for c, u in spec.inputs.items()
        }
        pool = WarmPool(workdir, pool_key(spec, prints))
    reused = pool is not None and pool.available()
    for channel, uri in spec.inputs.items():
        folder = target / channel
        if reused:
            pool.take(channel, folder)
        elif uri.startswith("s3://"):
            if stage.download_prefix(uri, folder) == 0:
                raise LocalRunError(f"inputs.{channel}: no objects under {uri}")
        elif Path(uri).exists():
            copy_local_input(Path(uri), folder)
        else:
            raise LocalRunError(f"inputs.{channel}: local path {uri} does not exist")
    if pool is not None:
        pool.keep({c: target / c for c in spec.inputs}, keep_alive)
    return "Reused" if reused else ("Available" if pool is not None else None)


def _local_print(path: Path) -> list[tuple[str, int, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
