"""``--mp_parameters``: SMP v2's parameters as each SDK hands them to the script, mapped one
to one onto the entrypoint's own degrees.

The SDK v2 form is made by sagemaker-training's own ``to_cmd_args`` from the golden
request's hyperparameter; the SDK v3 form is the golden v3 request's value, which v3's
torchrun driver passes as JSON text. Bad inputs tried: an unknown name, a degree of 2.5
and of True, offloading "maybe", context_parallel_degree 2, a value contradicting the same
hyperparameter, a JSON list, broken JSON.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from sagemaker_training import mapping

from sm_toolkit.errors import ConfigError
from sm_toolkit.train.smp_params import apply_mp_parameters

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "moe-smp.json").read_text())
GOLDEN_V3 = json.loads((ROOT / "tests" / "golden" / "v3" / "moe-smp.json").read_text())
EXPECTED = {
    "hybrid_shard_degree": 8,
    "expert_parallel_degree": 2,
    "tensor_parallel_degree": 1,
    "sm_activation_offloading": True,
    "activation_loading_horizon": 2,
}


def _parser():
    spec = importlib.util.spec_from_file_location(
        "train_moe", ROOT / "entrypoints" / "train_moe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_parser()


def _degrees(argv: list[str]) -> dict[str, object]:
    ns = _parser().parse(argv)
    apply_mp_parameters(ns)
    return {k: getattr(ns, k) for k in EXPECTED}


def _v2_argv() -> list[str]:
    # sagemaker-training decodes each hyperparameter's JSON, then makes the command line
    decoded = json.loads(GOLDEN["HyperParameters"]["mp_parameters"])
    return mapping.to_cmd_args({"mp_parameters": decoded})


def test_sdk_v2_form_through_sagemaker_training_maps_onto_the_degrees():
    argv = _v2_argv()
    assert argv[0] == "--mp_parameters" and "hybrid_shard_degree=8" in argv[1]
    assert _degrees(argv) == EXPECTED


def test_sdk_v3_form_json_text_maps_onto_the_degrees():
    text = GOLDEN_V3["Request"]["HyperParameters"]["mp_parameters"]
    assert _degrees(["--mp_parameters", text]) == EXPECTED


def test_without_mp_parameters_the_defaults_stay():
    assert _degrees([]) == {
        "hybrid_shard_degree": 0, "expert_parallel_degree": 1, "tensor_parallel_degree": 1,
        "sm_activation_offloading": False, "activation_loading_horizon": 2,
    }  # fmt: skip


def test_the_same_value_twice_is_fine_and_smp_only_knobs_are_ignored():
    text = '{"expert_parallel_degree": 2, "random_seed": 7, "context_parallel_degree": 1}'
    argv = ["--expert_parallel_degree", "2", "--mp_parameters", text]
    assert _degrees(argv)["expert_parallel_degree"] == 2


@pytest.mark.parametrize(
    "argv, field, words",
    [
        (["--mp_parameters", '{"pipeline_degree": 2}'], "mp_parameters.pipeline_degree",
         ["one of SMP v2's parameters"]),
        (["--mp_parameters", '{"hybrid_shard_degree": 2.5}'], "mp_parameters.hybrid_shard_degree",
         ["an integer"]),
        (["--mp_parameters", '{"expert_parallel_degree": true}'],
         "mp_parameters.expert_parallel_degree", ["an integer"]),
        (["--mp_parameters", "sm_activation_offloading=maybe"],
         "mp_parameters.sm_activation_offloading", ["true or false"]),
        (["--mp_parameters", '{"context_parallel_degree": 2}'],
         "mp_parameters.context_parallel_degree", ["not implemented"]),
        (["--hybrid_shard_degree", "4", "--mp_parameters", "hybrid_shard_degree=2"],
         "mp_parameters.hybrid_shard_degree", ["--hybrid_shard_degree (4)"]),
        (["--mp_parameters", "[1, 2]"], "mp_parameters", ["k=v"]),
        (["--mp_parameters", '{"a": '], "mp_parameters", ["JSON object"]),
    ],
)  # fmt: skip
def test_bad_mp_parameters_are_one_line(argv, field, words):
    with pytest.raises(ConfigError) as exc:
        _degrees(argv)
    line = str(exc.value)
    assert line.startswith(f"{field}: ") and "\n" not in line, line
    for word in words:
        assert word in line, line
