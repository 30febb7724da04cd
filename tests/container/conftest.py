"""Container tier: real Docker and SageMaker local mode against the image `make build` made.

Nothing here builds an image. The image tag comes from SM_TOOLKIT_IMAGE (default
sm-toolkit:latest). Without a usable Docker daemon (or without the image) the docker tests are
skipped with the reason, except in CI (CI=true), where that is a failure: CI is supposed to
have provisioned Docker with .ci/docker.sh and built the image with `make build`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
DEFAULT_IMAGE = "sm-toolkit:latest"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"container tier cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not found (run .ci/docker.sh)"
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`docker info` failed ({last}); start the daemon with .ci/docker.sh"
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """Tag of the built training image; skips (fails in CI) when Docker or the image is missing."""
    problem = _docker_problem()
    if problem:
        _unavailable(problem)
    tag = os.environ.get("SM_TOOLKIT_IMAGE", DEFAULT_IMAGE)
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if found.returncode != 0:
        _unavailable(f"image {tag} not built (run `make build` or set SM_TOOLKIT_IMAGE)")
    return tag


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.container)
