"""A project on SDK v3 installs sm-toolkit without its SDK changing.

`make venv-v3` installs sagemaker 3 first, freezes the venv, then installs sm-toolkit
(the CI order); these tests compare the SDK's distributions with that freeze.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions, requires
from pathlib import Path

import pytest

pytest.importorskip("sagemaker.train", reason="SDK v3 suite: run `make test-v3`")

FREEZE = Path(sys.prefix) / "freeze-before-sm-toolkit.txt"
# The SDK and the distributions it is made of (sagemaker-core, -train, -serve, -mlops, ...).
SDK = re.compile(r"^sagemaker([-_](core|train|serve|mlops|mlflow|schema.*))?$", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sdk_versions_now() -> dict[str, str]:
    return {
        _norm(d.metadata["Name"]): d.version
        for d in distributions()
        if SDK.match(d.metadata["Name"])
    }


def test_sm_toolkit_left_the_installed_sdk_as_it_was():
    if not FREEZE.exists():
        pytest.skip(f"{FREEZE} is written by `make venv-v3`")
    before = {}
    for line in FREEZE.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and SDK.match(name):
            before[_norm(name)] = version
    assert before.get("sagemaker", "").startswith("3."), before
    assert _sdk_versions_now() == before


def test_sm_toolkit_requires_no_sdk_generation_outside_its_extras():
    reqs = requires("sm-toolkit") or []
    sdk = [r for r in reqs if re.match(r"^sagemaker\s*[<>=!~(]", r)]
    assert sdk, reqs  # the extras name both generations
    assert all("extra ==" in r for r in sdk), sdk
    assert {re.search(r'extra == "([^"]+)"', r).group(1) for r in sdk} == {"sdk-v2", "sdk-v3"}
