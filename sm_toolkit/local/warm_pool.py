"""Warm pools for local runs: a following job with the same image, instances, code and
data reuses what the first one prepared, until the keep-alive period runs out.

SageMaker keeps the instances of a job with KeepAlivePeriodInSeconds > 0 and hands them
to the next matching job. Locally the expensive part that can be kept is the staged
channel data (the download from S3); it is kept under the work folder and hard-linked
into the next job's /opt/ml, with an expiry time written beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from sm_toolkit.spec import JobSpec

EXPIRES_FILE = "expires-at"


def pool_key(spec: JobSpec, input_fingerprint: dict[str, object]) -> str:
    """What must match for a job to reuse a pool: image, instances, code, and data."""
    code = sorted(
        (p.relative_to(spec.source_dir).as_posix(), p.stat().st_size, int(p.stat().st_mtime))
        for p in Path(spec.source_dir).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    doc = {
        "image": spec.image_uri,
        "instance": spec.instance.model_dump(),
        "code": code,
        "inputs": input_fingerprint,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class WarmPool:
    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "warm-pools" / key
        self.key = key

    def available(self, now: float | None = None) -> bool:
        expires = self.dir / EXPIRES_FILE
        if not expires.exists():
            return False
        if float(expires.read_text()) < (now or time.time()):
            shutil.rmtree(self.dir, ignore_errors=True)  # the pool's keep-alive ran out
            return False
        return True

    def take(self, channel: str, target: Path) -> None:
        """Hard-link a kept channel into a job's input/data/<channel>."""
        shutil.copytree(
            self.dir / "channels" / channel, target, copy_function=os.link, dirs_exist_ok=True
        )

    def keep(self, channels: dict[str, Path], keep_alive_seconds: int) -> None:
        """Keep a job's staged channels for the next job, until now + keep-alive."""
        for name, source in channels.items():
            target = self.dir / "channels" / name
            if not target.exists():
                shutil.copytree(source, target, copy_function=os.link)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / EXPIRES_FILE).write_text(str(time.time() + keep_alive_seconds))
