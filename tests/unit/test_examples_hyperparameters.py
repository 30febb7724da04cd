"""Every hyperparameter an example sets or tunes is one its entrypoint accepts, with a
value of the right type: a typo here would only fail minutes into a SageMaker job."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from sm_toolkit.spec import load_spec
from sm_toolkit.spec.tuning import CategoricalRange

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _argv(values: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += [f"--{key}", str(value)]  # as sagemaker-training passes them
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_hyperparameters_parse_with_the_entrypoint(path):
    spec = load_spec(path)
    parser = runpy.run_path(
        str(Path(spec.source_dir) / spec.entry_point), run_name="example_check"
    )["make_parser"]()
    parser.parse(_argv(spec.hyperparameters))
    if spec.tuning is None:
        return
    for name, r in spec.tuning.ranges.items():
        samples = r.values if isinstance(r, CategoricalRange) else [r.min, r.max]
        for value in samples:
            parser.parse(_argv({**spec.hyperparameters, name: value}))


def test_a_misspelt_hyperparameter_is_caught():
    from sm_toolkit.errors import ConfigError

    parser = runpy.run_path(str(ROOT / "entrypoints" / "train_rnn.py"), run_name="example_check")[
        "make_parser"
    ]()
    with pytest.raises(ConfigError, match="hidden_size"):
        parser.parse(["--hidden_size", "64"])
