"""--set and --job-name: valid values change only what they name; bad ones pass the file's
checks (see test_spec_bad_inputs.py for the refusals through the CLI)."""

from __future__ import annotations

import pytest
from cli_helpers import EXAMPLES, ROOT

from sm_toolkit.errors import ConfigError
from sm_toolkit.spec import load_spec
from sm_toolkit.spec.overrides import apply_overrides, check_job_name, parse_overrides

SPECS = [*EXAMPLES, ROOT / "examples" / "byo-script" / "spec.yaml"]


@pytest.mark.parametrize("path", SPECS, ids=[p.parent.name + "/" + p.stem for p in SPECS])
def test_set_changes_only_the_hyperparameters_it_names(path):
    spec = load_spec(path)
    changed = apply_overrides(spec, ["epochs=2", "note=hello world", "flag=true"])
    added = {"epochs": 2, "note": "hello world", "flag": True}  # read as YAML scalars
    assert changed.model_dump() == {
        **spec.model_dump(),
        "hyperparameters": {**spec.hyperparameters, **added},
    }
    assert ("region" in changed.model_fields_set) == ("region" in spec.model_fields_set)


def test_parse_overrides_keeps_the_text_for_the_local_runner():
    assert parse_overrides(["lr=0.1", "name=a=b"]) == {"lr": "0.1", "name": "a=b"}


@pytest.mark.parametrize(
    "name, tuning, ok",
    [("job-1", False, True), ("j" * 63, False, True), ("j" * 64, False, False),
     ("bad_name!", False, False), ("t" * 32, True, True), ("t" * 33, True, False),
     ("job\n", False, False)],
)  # fmt: skip
def test_job_names_follow_the_api_patterns(name, tuning, ok):
    if ok:
        assert check_job_name(name, tuning=tuning) == name
    else:
        with pytest.raises(ConfigError, match="--job-name"):
            check_job_name(name, tuning=tuning)
