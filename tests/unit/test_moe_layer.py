"""MoE layer: routing and dispatch against a per-token loop, capacity, losses, bias balancing."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe_experts import FeedForward, GroupedExperts
from sm_toolkit.models.moe_layer import DispatchConfig, MoELayer
from sm_toolkit.models.moe_router import (
    RouterConfig,
    TopKRouter,
    load_balancing_loss,
    router_z_loss,
)

D, H = 6, 10


def make_layer(
    n_experts=4, top_k=2, shared=False, kind="mlp", expert_compute="loop", d=D, h=H, **dispatch
) -> MoELayer:
    torch.manual_seed(0)
    return MoELayer(
        router=TopKRouter(RouterConfig(d_model=d, n_experts=n_experts, top_k=top_k)),
        experts=GroupedExperts(
            n_experts=n_experts,
            d_model=d,
            d_ff=h,
            activation="gelu",
            out_std=0.2,
            kind=kind,
            compute=expert_compute,
        ),  # fmt: skip
        dispatch=DispatchConfig(**dispatch),
        shared_expert=FeedForward(d_model=d, d_ff=h, activation="gelu", out_std=0.2)
        if shared
        else None,
        aux_loss_weight=0.0,
        z_loss_weight=0.0,
    )


def reference_forward(layer: MoELayer, x_ND: torch.Tensor, capacity: int | None) -> torch.Tensor:
    """Naive oracle: token by token, first choices of all tokens before any second choice."""
    router, experts = layer.router, layer.experts
    probs_NE = router.gate(x_ND).softmax(-1)
    top_NK = probs_NE.topk(router.config.top_k, dim=-1)
    weights_NK = top_NK.values
    if router.config.top_k > 1:  # top-1 keeps the raw probability (Switch), so the gate learns
        weights_NK = weights_NK / weights_NK.sum(-1, keepdim=True)
    rows = [torch.zeros(x_ND.shape[1]) for _ in range(x_ND.shape[0])]
    taken = [0] * layer.n_experts
    for k in range(router.config.top_k):
        for n in range(x_ND.shape[0]):
            e = int(top_NK.indices[n, k])
            if capacity is not None and taken[e] >= capacity:
                continue
            taken[e] += 1
            h = experts.act(x_ND[n] @ experts.w1_EDH[e])
            if experts.kind == "swiglu":  # silu(x w1) * (x w3)
                h = h * (x_ND[n] @ experts.w3_EDH[e])
            rows[n] = rows[n] + weights_NK[n, k] * (h @ experts.w2_EHD[e])
    return torch.stack(rows)


@pytest.mark.parametrize(
    ("top_k", "dispatch"),
    [
        (1, {"dropless": True}),
        (2, {"dropless": True}),
        (3, {"dropless": True}),
        (2, {"capacity_factor": 0.5}),
        (1, {"capacity_factor": 0.5, "compute": "padded"}),
        (2, {"capacity_factor": 0.75, "compute": "padded"}),
    ],
)
@pytest.mark.parametrize(
    ("kind", "compute"),
    [("mlp", "loop"), ("mlp", "grouped"), ("swiglu", "loop"), ("swiglu", "grouped")],
)
def test_outputs_and_gradients_match_per_token_loop(top_k, dispatch, kind, compute):
    d, h = (8, 16) if compute == "grouped" else (D, H)  # grouped_mm: 16-byte strides
    layer = make_layer(top_k=top_k, kind=kind, expert_compute=compute, d=d, h=h, **dispatch)
    torch.manual_seed(1)
    x_ND = torch.randn(24, d)
    g_ND = torch.randn(24, d)
    capacity = layer.capacity(24)
    params = [layer.router.gate.weight, *layer.experts.parameters()]
    assert len(params) == (4 if kind == "swiglu" else 3)

    x1 = x_ND.clone().requires_grad_(True)
    y_ref = reference_forward(layer, x1, capacity)
    ref_grads = torch.autograd.grad((y_ref * g_ND).sum(), [x1, *params])
    x2 = x_ND.clone().requires_grad_(True)
    y, _, stats = layer(x2[None])
    grads = torch.autograd.grad((y[0] * g_ND).sum(), [x2, *params])

    torch.testing.assert_close(y[0], y_ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)
    if capacity is not None and dispatch["capacity_factor"] < 1:
        assert stats["drop_rate"] > 0  # the capacity path was really exercised


def skewed_layer(**dispatch) -> tuple[MoELayer, torch.Tensor]:
    """Top-1 layer where every one of 16 tokens picks expert 0."""
    layer = make_layer(top_k=1, **dispatch)
    with torch.no_grad():
        layer.router.gate.weight.zero_()
        layer.router.gate.weight[0, 0] = 10.0
    x_ND = torch.randn(16, D)
    x_ND[:, 0] = 1.0
    return layer, x_ND


def test_capacity_drops_exactly_the_overflow():
    layer, x_ND = skewed_layer(capacity_factor=1.0)
    assert layer.capacity(16) == 4  # ceil(1.0 * k=1 * 16 tokens / 4 experts)
    y, _, stats = layer(x_ND[None])
    assert stats["tokens_per_expert"] == [16, 0, 0, 0]
    assert stats["drop_rate"] == 12 / 16
    assert stats["balance"] == 4.0
    assert stats["dead_experts"] == 3
    nonzero = (y[0].abs().sum(-1) > 0).tolist()
    assert nonzero == [True] * 4 + [False] * 12  # earliest tokens keep their slot


def test_eval_uses_eval_capacity_factor():
    layer, x_ND = skewed_layer(capacity_factor=1.0, eval_capacity_factor=2.0)
    layer.eval()
    assert layer.capacity(16) == 8
    _, _, stats = layer(x_ND[None])
    assert stats["drop_rate"] == 8 / 16


def test_capacity_never_exceeds_tokens():
    layer = make_layer(capacity_factor=100.0)
    assert layer.capacity(5) == 5
    y, _, _ = layer(torch.randn(1, 5, D))
    assert y.shape == (1, 5, D)


def test_dropless_drops_nothing_under_skew():
    layer, x_ND = skewed_layer(dropless=True)
    y, _, stats = layer(x_ND[None])
    assert stats["drop_rate"] == 0.0
    assert bool((y[0].abs().sum(-1) > 0).all())


def test_experts_with_zero_tokens_get_zero_gradients():
    layer, x_ND = skewed_layer(dropless=True)
    y, _, _ = layer(x_ND[None])
    y.square().sum().backward()
    grad = layer.experts.w1_EDH.grad
    assert grad[0].abs().sum() > 0
    assert torch.equal(grad[1:], torch.zeros_like(grad[1:]))


def test_shared_expert_adds_dense_path():
    layer = make_layer(shared=True, dropless=True)
    with torch.no_grad():
        layer.experts.w2_EHD.zero_()  # routed experts now contribute nothing
    x_BTD = torch.randn(2, 3, D)
    y, _, _ = layer(x_BTD)
    torch.testing.assert_close(y, layer.shared_expert(x_BTD))


def test_balance_loss_is_one_for_uniform_routing_and_e_when_collapsed():
    n_experts = 4
    uniform_NE = torch.full((8, n_experts), 1 / n_experts)
    chosen_NK = torch.arange(8).remainder(n_experts)[:, None]
    assert load_balancing_loss(uniform_NE, chosen_NK).item() == pytest.approx(1.0)
    collapsed_NE = torch.zeros(8, n_experts)
    collapsed_NE[:, 0] = 1.0
    chosen_NK = torch.zeros(8, 1, dtype=torch.long)
    assert load_balancing_loss(collapsed_NE, chosen_NK).item() == pytest.approx(n_experts)


def test_balance_loss_counting_forms_differ_by_hand():
    # 2 tokens, 2 experts, top-2: all_k counts both choices (f = 1/2, 1/2);
    # top1 counts only first choices, both on expert 0 (f = 1, 0).
    probs_NE = torch.tensor([[0.75, 0.25], [0.75, 0.25]])
    chosen_NK = torch.tensor([[0, 1], [0, 1]])
    # E * sum f*P: all_k = 2 * (0.5*0.75 + 0.5*0.25) = 1.0; top1 = 2 * (1*0.75) = 1.5
    assert load_balancing_loss(probs_NE, chosen_NK, "all_k").item() == pytest.approx(1.0)
    assert load_balancing_loss(probs_NE, chosen_NK, "top1").item() == pytest.approx(1.5)


def test_z_loss_value():
    logits_NE = torch.zeros(3, 4)
    assert router_z_loss(logits_NE).item() == pytest.approx(math.log(4) ** 2)
    logits_NE = torch.tensor([[0.0, math.log(3.0)]])  # logsumexp = log 4
    assert router_z_loss(logits_NE).item() == pytest.approx(math.log(4) ** 2)


def test_layer_aux_loss_is_weighted_sum():
    layer = make_layer(dropless=True)
    layer.aux_loss_weight, layer.z_loss_weight = 0.5, 0.25
    x_ND = torch.randn(10, D)
    routing = layer.router(x_ND)
    _, aux, _ = layer(x_ND[None])
    want = 0.5 * routing.balance_loss + 0.25 * routing.z_loss
    torch.testing.assert_close(aux, want)


def test_bias_changes_selection_not_weights():
    router = TopKRouter(RouterConfig(d_model=D, n_experts=4, top_k=1, bias_update_rate=0.1))
    router.expert_bias_E[3] = 10.0
    x_ND = torch.randn(12, D)
    routing = router(x_ND)
    assert routing.expert_TK.eq(3).all()
    probs_NE = router.gate(x_ND).softmax(-1)
    torch.testing.assert_close(routing.weight_TK[:, 0], probs_NE[:, 3])


def test_bias_update_moves_towards_balance_by_sign():
    router = TopKRouter(RouterConfig(d_model=D, n_experts=4, top_k=1, bias_update_rate=0.01))
    router.load_E.copy_(torch.tensor([10.0, 0.0, 5.0, 5.0]))  # mean load 5
    router.update_bias()
    torch.testing.assert_close(router.expert_bias_E, torch.tensor([-0.01, 0.01, 0.0, 0.0]))
    assert router.load_E.sum() == 0
    assert not any(p is router.expert_bias_E for p in router.parameters())


def test_random_second_expert_keeps_with_probability_twice_its_weight():
    torch.manual_seed(0)
    router = TopKRouter(RouterConfig(d_model=2, n_experts=2, top_k=2, random_second_expert=True))
    with torch.no_grad():  # logits (log 9, 0): normalised weights 0.9 and 0.1 -> keep 20 %
        router.gate.weight.copy_(torch.tensor([[math.log(9.0), 0.0], [0.0, 0.0]]))
    x_ND = torch.tensor([[1.0, 0.0]]).repeat(4000, 1)
    routing = router(x_ND)
    kept = routing.expert_TK[:, 1].ge(0).float().mean().item()
    assert 0.17 < kept < 0.23
    dropped = routing.expert_TK[:, 1] < 0
    assert routing.weight_TK[dropped, 1].eq(0).all()
    router.eval()
    assert router(x_ND).expert_TK.ge(0).all()  # evaluation keeps both experts


def test_jitter_only_in_training():
    router = TopKRouter(RouterConfig(d_model=D, n_experts=4, top_k=2, jitter_eps=0.5))
    x_ND = torch.randn(50, D)
    a, b = router(x_ND).weight_TK, router(x_ND).weight_TK
    assert not torch.equal(a, b)
    router.eval()
    torch.testing.assert_close(router(x_ND).weight_TK, router(x_ND).weight_TK)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RouterConfig(d_model=4, n_experts=4, top_k=5), "top_k"),
        (
            lambda: RouterConfig(d_model=4, n_experts=4, top_k=1, random_second_expert=True),
            "random_second_expert",
        ),  # fmt: skip
        (lambda: DispatchConfig(capacity_factor=0.0), "capacity_factor"),
        (lambda: DispatchConfig(dropless=True, compute="padded"), "capacity_compute"),
    ],
)
def test_invalid_options_name_the_field(make, field):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field


class _AllocatedBytes(TorchDispatchMode):
    """Sums the bytes of every new storage that ops create while active (views excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = pytree.tree_leaves((args, kwargs))
        seen = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                self.total += t.untyped_storage().nbytes()
        return out


def test_expert_backward_writes_weight_gradients_once():
    # Guard against indexing W[e] of the stacked weights under autograd: its backward
    # would write one zero-filled full [E, D, H] gradient per expert (E times the bytes).
    n_experts, d_model, d_ff = 32, 8, 16
    experts = GroupedExperts(
        n_experts=n_experts,
        d_model=d_model,
        d_ff=d_ff,
        activation="relu",
        out_std=0.1,
        compute="loop",
    )
    counts = [2] * n_experts
    x_SD = torch.randn(sum(counts), d_model, requires_grad=True)
    y_SD = experts(x_SD, counts)
    weight_bytes = sum(p.numel() * p.element_size() for p in experts.parameters())
    with _AllocatedBytes() as allocated:
        y_SD.sum().backward()
    # the fused loop writes each expert's gradient into its slice of one [E, D, H]
    # gradient: the weight gradients once, no per-expert copies and no stack of them
    assert weight_bytes <= allocated.total < 1.5 * weight_bytes
    experts.zero_grad()
    y_SD = experts.forward_autograd_loop(x_SD, counts)  # through autograd: unbind + stack
    with _AllocatedBytes() as allocated:
        y_SD.sum().backward()
    assert 2 * weight_bytes <= allocated.total < 3 * weight_bytes


@pytest.mark.parametrize("activation", ["gelu", "relu", "silu", "tanh", "prelu"])
@pytest.mark.parametrize("kind", ["mlp", "swiglu"])
def test_fused_loop_equals_the_autograd_loop(kind, activation):
    """moe_loop.LoopExperts (GELU, ReLU, SiLU, SwiGLU) and the autograd loop it replaces
    (every other activation) give the same outputs and gradients, zero-row experts too:
    the same kernels, so equal up to the summation order MKL picks for output rows that are
    not 64-byte aligned (here 6 floats a row; 1e-9 seen)."""
    from sm_toolkit.models import moe_loop

    torch.manual_seed(4)
    experts = GroupedExperts(
        n_experts=4, d_model=6, d_ff=10, activation=activation, out_std=0.2, kind=kind
    )
    fused = moe_loop.supports(experts.act, torch.empty(0), list(experts.parameters()))
    assert fused == (kind == "swiglu" or activation in ("gelu", "relu", "silu"))
    x_SD, g_SD, counts = torch.randn(30, 6), torch.randn(30, 6), [9, 0, 21, 0]
    outs = {}
    for compute in ("loop", "autograd_loop"):
        x = x_SD.clone().requires_grad_(True)
        y = getattr(experts, f"forward_{compute}")(x, counts)
        (y * g_SD).sum().backward()
        outs[compute] = [y, x.grad] + [p.grad.clone() for p in experts.parameters()]
        experts.zero_grad()
    for a, b in zip(outs["loop"], outs["autograd_loop"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert torch.equal(outs["loop"][2][1], torch.zeros(6, 10))  # expert 1 had no rows


def test_grouped_gemm_equals_the_loop_bitwise_and_takes_a_broadcast_gradient():
    torch.manual_seed(3)
    x_SD = torch.randn(40, 8)
    counts = [0, 17, 3, 20]  # an expert with no rows, too
    for kind in ("mlp", "swiglu"):
        experts = make_layer(kind=kind, d=8, h=16).experts
        outs = {}
        for compute in ("loop", "grouped"):
            x = x_SD.clone().requires_grad_(True)
            y = getattr(experts, f"forward_{compute}")(x, counts)
            y.sum().backward()  # a zero-stride gradient: grouped_mm needs it made contiguous
            outs[compute] = [y, x.grad] + [p.grad.clone() for p in experts.parameters()]
            experts.zero_grad()
        for a, b in zip(outs["loop"], outs["grouped"], strict=True):
            assert torch.equal(a, b)


def test_auto_compute_is_the_loop_on_cpu_and_the_probe_elsewhere():
    from sm_toolkit.models.moe_experts import _CHOICE

    experts = make_layer(expert_compute="auto", d=8, h=16).experts
    n_cached = len(_CHOICE)
    assert experts.resolved_compute(24, torch.device("cpu")) == "loop"
    assert len(_CHOICE) == n_cached  # decided by the benchmark's measurements, no probe
    assert make_layer(expert_compute="grouped", d=8, h=16).experts.resolved_compute(
        24, torch.device("cpu")
    ) == "grouped"  # fmt: skip


def test_auto_compute_times_both_once_and_keeps_one():
    from sm_toolkit.models.moe_experts import _CHOICE, choose_compute

    experts = make_layer(kind="swiglu", expert_compute="auto", d=8, h=16).experts
    rng = torch.get_rng_state()
    first = choose_compute(experts, 24, torch.device("cpu"))
    assert first in ("loop", "grouped")
    assert torch.equal(torch.get_rng_state(), rng)  # the probe leaves training RNG alone
    n_cached = len(_CHOICE)
    assert choose_compute(experts, 30, torch.device("cpu")) == first  # same bucket: cached
    assert len(_CHOICE) == n_cached


def test_bad_expert_kind_and_compute_name_the_field():
    with pytest.raises(ConfigError, match="expert_kind"):
        make_layer(kind="glu")
    with pytest.raises(ConfigError, match="expert_compute"):
        make_layer(expert_compute="fast")
    with pytest.raises(ConfigError, match="multiples of 8"):
        make_layer(expert_compute="grouped", d=6)


class _HostSyncs(TorchDispatchMode):
    """Records every op that reads a device value back to the host: `.item()`, `int()`,
    `bool()` (aten._local_scalar_dense), data-dependent shapes (nonzero, masked_select,
    bincount, unique, repeat_interleave, boolean-mask indexing), plus `Tensor.tolist`,
    which reads memory without dispatching an op."""

    SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "bincount", "unique",
                "_unique2", "repeat_interleave")  # fmt: skip

    def __enter__(self):
        self.seen: list[str] = []
        self._tolist = torch.Tensor.tolist
        seen = self.seen

        def tolist(t, *a, **k):
            seen.append("tolist")
            return self._tolist(t, *a, **k)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.SYNC_OPS:
            self.seen.append(name)
        if name in ("index", "index_put", "index_put_"):
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                   for i in (args[1] if len(args) > 1 else ()) if i is not None):  # fmt: skip
                self.seen.append(f"{name}[bool]")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "dispatch", [{"dropless": True}, {"capacity_factor": 0.5}], ids=["dropless", "capacity"]
)
@pytest.mark.parametrize("kind", ["mlp", "swiglu"])
def test_grouped_forward_and_backward_never_sync_with_the_host(kind, dispatch):
    """The grouped_mm path keeps routing counts and offsets on the device (on a GPU the
    forward never waits for the host); the loop path must read the counts back, which
    shows the detector works."""
    torch.manual_seed(5)
    x_ND = torch.randn(24, 8, requires_grad=True)
    for compute, want_syncs in (("grouped", False), ("loop", True)):
        layer = make_layer(kind=kind, expert_compute=compute, d=8, h=16, **dispatch)
        with _HostSyncs() as syncs:
            y, aux, stats = layer(x_ND[None])
            (y.sum() + aux).backward()
        assert bool(syncs.seen) == want_syncs, (compute, syncs.seen)
        assert "tokens_per_expert" in stats  # reading the stats afterwards is what syncs
        if "capacity_factor" in dispatch:
            assert stats["drop_rate"] > 0


def test_grouped_device_plan_with_removed_second_choices_matches_the_loop():
    """Random routing removes second choices (-1): the device plan sorts them after the
    kept rows, runs them in the last group and masks them out; same result as the loop."""
    outs = {}
    for compute in ("loop", "grouped"):
        layer = make_layer(expert_compute=compute, d=8, h=16, capacity_factor=0.75)
        layer.router.config = dataclasses.replace(layer.router.config, random_second_expert=True)
        torch.manual_seed(6)
        x = torch.randn(32, 8, requires_grad=True)
        y, _, stats = layer(x[None])
        (y * torch.arange(8.0)).sum().backward()
        outs[compute] = (y, x.grad, layer.experts.w1_EDH.grad, stats["tokens_per_expert"])
    assert min(outs["loop"][3]) >= 0 and sum(outs["loop"][3]) < 64  # some were removed
    for a, b in zip(outs["loop"][:3], outs["grouped"][:3], strict=True):
        torch.testing.assert_close(a, b)
    assert outs["loop"][3] == outs["grouped"][3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (not run in CI)")
def test_grouped_forward_passes_cuda_sync_debug_mode():
    """On a GPU, torch's own detector: any synchronising call in the forward raises."""
    layer = make_layer(expert_compute="grouped", d=64, h=128, dropless=True).cuda().bfloat16()
    x = torch.randn(1, 256, 64, device="cuda", dtype=torch.bfloat16)
    layer(x)  # warm up outside the check (allocator, kernels)
    torch.cuda.set_sync_debug_mode("error")
    try:
        y, aux, _ = layer(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.shape == x.shape and torch.isfinite(aux)
