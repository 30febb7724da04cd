"""benchmarks/moe_layer.py: the Hugging Face Mixtral block it times is a trained-like block,
and the "times faster than Mixtral" figures are paired per round.

The block's parameters come from torch.empty and only a model's `_init_weights` fills them;
the benchmark once timed a block whose router read NaNs (uninitialised memory), which
routed nearly every token to one or two experts and made the block look dense-fast.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "moe_layer.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_moe_layer", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm"])
def test_mixtral_block_is_initialised_and_routes_over_all_experts(bench, implementation):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    block = bench.make_mixtral(8, implementation)
    for name, param in block.named_parameters():
        assert torch.isfinite(param).all(), name
        assert 0.015 < param.std().item() < 0.025, (name, param.std().item())
    x = torch.randn(1, 512, bench.D_MODEL)
    out = block(x)
    y = out[0] if isinstance(out, tuple) else out
    assert y.shape == x.shape and torch.isfinite(y).all()
    logits = block.gate(x[0])
    logits = logits[0] if isinstance(logits, tuple) else logits  # transformers 5: (logits, ...)
    chosen = torch.topk(logits, bench.TOP_K, dim=-1).indices
    load = torch.bincount(chosen.reshape(-1), minlength=8)
    assert (load > 0).all() and load.max() < 3 * load.float().mean(), load.tolist()


def test_times_faster_than_mixtral_is_the_median_of_per_round_ratios(bench, capsys):
    dense = torch.nn.Linear(2, 2)
    variants = {"dense": dense, "swiglu_dropless_e8": dense, "mixtral_e8": dense}
    times = {
        "dense": [1.0, 1.0, 1.0],
        "swiglu_dropless_e8": [1.0, 2.0, 1.0],
        "mixtral_e8": [1.5, 2.0, 3.0],
    }
    memory = dict.fromkeys(variants, 1)
    result = bench.report(variants, times, memory, rounds=3)
    # per round 1.5, 1.0, 3.0: median 1.5 (a ratio of medians would say 2.0)
    assert math.isclose(result["swiglu_vs_mixtral_e8"], 1.5)
    assert math.isclose(result["mixtral_e8"], 2.0)
    assert "| mixtral_e8 |" in capsys.readouterr().out


def test_parts_split_a_dropless_layer_into_its_experts_and_the_rest(bench):
    """--parts: `experts_only` runs the same experts on a perfectly balanced split of
    TOP_K x TOKENS rows; `routing_only` is the layer whose experts return their rows, so the
    input gradient is the routing's alone (the gate-weighted sum of each token's k copies)."""
    torch.manual_seed(0)
    parts = bench.make_parts(8)
    alone, routing = parts["experts_only_e8"], parts["routing_only_e8"]
    assert alone.counts == [bench.TOP_K * bench.TOKENS // 8] * 8
    assert [n for n, _ in routing.named_parameters()] == ["router.gate.weight"]
    x = torch.randn(bench.TOKENS, bench.D_MODEL, requires_grad=True)
    g = torch.randn(bench.TOKENS, bench.D_MODEL)
    y, _, _ = routing(x)
    # the k normalised gate weights of a token sum to 1: y = x, row for row
    torch.testing.assert_close(y, x)
    for module in parts.values():
        step = bench.step_fn(module, x, g)
        step()  # runs forward and backward and leaves no gradient behind
        assert all(p.grad is None for p in module.parameters())
        assert x.grad is None and alone.x_SD.grad is None
    out = alone()
    (out * alone.g_SD).sum().backward()
    assert alone.x_SD.grad is not None and alone.experts.w1_EDH.grad is not None
    # the report takes them beside the layers (an expert-less layer once broke it)
    variants = {"dense": torch.nn.Linear(2, 2), **parts}
    times = dict.fromkeys(variants, [1.0, 2.0])
    result = bench.report(variants, times, dict.fromkeys(variants, 1), rounds=2)
    assert result["routing_only_e8"] == result["experts_only_e8"] == 1.0
