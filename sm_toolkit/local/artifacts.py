"""What SageMaker uploads after a job: model.tar.gz (from /opt/ml/model) and output.tar.gz
(from /opt/ml/output/data), to ``<S3OutputPath>/<job>/output/``.

Several hosts' folders are merged (the first host's file wins a name clash, as SageMaker
local mode does). A failed job that left its model folder empty reports no model artifact;
an upload that fails is reported, never silently dropped, and does not stop the other one.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from sm_toolkit import contract
from sm_toolkit.local.hosts import Host
from sm_toolkit.local.plan import JobPlan
from sm_toolkit.local.s3 import S3


@dataclass
class Uploaded:
    model: str | None = None
    output: str | None = None
    problems: list[str] = field(default_factory=list)


def upload(plan: JobPlan, hosts: list[Host], s3: S3, scratch: Path, status: str) -> Uploaded:
    prefix = f"{plan.output_s3.rstrip('/')}/{plan.name}/output"
    done = Uploaded()
    model_dirs = [h.opt_ml / contract.MODEL_DIR for h in hosts]
    has_model = any(any(d.rglob("*")) for d in model_dirs if d.is_dir())
    if status != "Failed" or has_model:
        done.model = _pack_and_upload(
            model_dirs, scratch / "model.tar.gz", f"{prefix}/model.tar.gz", s3, done.problems
        )
    output_dirs = [h.opt_ml / contract.OUTPUT_DATA_DIR for h in hosts]
    done.output = _pack_and_upload(
        output_dirs, scratch / "output.tar.gz", f"{prefix}/output.tar.gz", s3, done.problems
    )
    return done


def _pack_and_upload(
    folders: list[Path], archive: Path, uri: str, s3: S3, problems: list[str]
) -> str | None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        added: set[str] = set()
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                name = path.relative_to(folder).as_posix()
                if name not in added:
                    tar.add(path, arcname=name, recursive=False)
                    added.add(name)
    try:
        return s3.upload_file(archive, uri)
    except Exception as err:  # noqa: BLE001 - report any S3 failure with what it was for
        problems.append(f"{archive.name} not uploaded to {uri}: {type(err).__name__}: {err}")
        return None
