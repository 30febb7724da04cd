"""The wheel's package list names every subpackage (pyproject lists them by hand so that it
can also map entrypoints/ and examples/ into the wheel), and psutil is declared."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_for_the_wheel():
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "sm_toolkit").rglob("__init__.py")
    }
    listed = set(_setuptools()["tool"]["setuptools"]["packages"])
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_entrypoints_and_examples_are_mapped_into_the_wheel():
    dirs = _setuptools()["tool"]["setuptools"]["package-dir"]
    assert dirs == {"sm_toolkit._entrypoints": "entrypoints", "sm_toolkit._examples": "examples"}


def test_runtime_imports_are_declared():
    deps = " ".join(_setuptools()["project"]["dependencies"])
    assert "psutil" in deps
    assert "moto" in " ".join(_setuptools()["project"]["optional-dependencies"]["demo"])
