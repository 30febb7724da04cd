"""fp32 CPU matmuls through oneDNN (sm_toolkit.models.cpu_matmul): which engine `auto` picks,
that the oneDNN paths compute what torch computes (float64 references), that they really
run on oneDNN (the op is recorded), what stays on torch's engine, and that the expert loop
gives oneDNN only row counts that are multiples of ROW_BUCKET."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from sm_toolkit.errors import ConfigError
from sm_toolkit.models import cpu_matmul, moe_loop
from sm_toolkit.models.cpu_matmul import ROW_BUCKET, Linear, row_window
from sm_toolkit.models.moe_experts import GroupedExperts

ONEDNN_OP = torch.ops.mkldnn._linear_pointwise.default


class OpRecorder(TorchDispatchMode):
    """Every op dispatched on this thread, with its tensor arguments' shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self.calls.append((func, shapes))
        return func(*args, **(kwargs or {}))

    def onednn_shapes(self) -> list[list[tuple[int, ...]]]:
        return [shapes for func, shapes in self.calls if func is ONEDNN_OP]


@pytest.fixture
def engine():
    """Sets the engine for one test (call it with the name), back to `auto` after."""
    yield cpu_matmul.set_engine
    cpu_matmul.set_engine("auto")


@pytest.fixture
def onednn(engine):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    engine("onednn")


@pytest.mark.parametrize(
    ("vendor", "family", "capability", "expected"),
    [
        ("AuthenticAMD", 26, "AVX512", "onednn"),  # Zen 5 (this project's machine)
        ("AuthenticAMD", 27, "AVX512", "onednn"),  # later families
        ("AuthenticAMD", 25, "AVX512", "torch"),  # Zen 4: AVX-512 on 256-bit units
        ("AuthenticAMD", 26, "AVX2", "torch"),  # no AVX-512 kernels for oneDNN either
        ("GenuineIntel", 6, "AVX512", "torch"),  # MKL runs its AVX-512 kernels
        ("", 0, "DEFAULT", "torch"),  # not x86
    ],
)
def test_auto_takes_onednn_on_zen5_and_later_only(
    monkeypatch, vendor, family, capability, expected
):
    monkeypatch.setattr(cpu_matmul, "_cpu_facts", lambda: (vendor, family, capability))
    assert cpu_matmul.engine() == expected


def test_the_named_engines_are_kept(engine):
    engine("torch")
    assert cpu_matmul.engine() == "torch"
    engine("onednn")
    assert cpu_matmul.engine() == ("onednn" if torch.backends.mkldnn.is_available() else "torch")


def test_this_machine_reads_as_x86_facts():
    vendor, family, capability = cpu_matmul._cpu_facts()
    assert isinstance(family, int) and capability
    if vendor:
        assert family > 0


@pytest.mark.parametrize("bad", ["mkl", "oneDNN", "", "blas"])
def test_an_unknown_engine_is_one_config_error(bad):
    with pytest.raises(ConfigError) as err:
        cpu_matmul.set_engine(bad)
    assert str(err.value) == f"cpu_matmul: {bad!r} is not allowed; one of auto, torch, onednn"
    assert cpu_matmul._engine == "auto"  # unchanged


def _linear_case(n_in: int, n_out: int, bias: bool):
    gen = torch.Generator().manual_seed(n_in + n_out)
    x = torch.randn(3, 70, n_in, generator=gen)  # (B, T, in): 210 rows
    layer = Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.normal_(0, 0.1, generator=gen)
        if bias:
            layer.bias.normal_(0, 0.1, generator=gen)
    return x, layer, torch.randn(3, 70, n_out, generator=gen)


@pytest.mark.parametrize(("n_in", "n_out"), [(64, 160), (160, 64)])  # both weight-grad forms
@pytest.mark.parametrize("bias", [True, False])
def test_linear_on_onednn_computes_what_torch_computes(onednn, n_in, n_out, bias):
    x, layer, g = _linear_case(n_in, n_out, bias)
    x.requires_grad_(True)
    with OpRecorder() as rec:
        y = layer(x)
        (y * g).sum().backward()
    assert len(rec.onednn_shapes()) == 3  # forward, input gradient, weight gradient
    params = [layer.weight] + ([layer.bias] if bias else [])
    ref_params = [p.detach().double().requires_grad_(True) for p in params]
    ref_x = x.detach().double().requires_grad_(True)
    ref_y = F.linear(ref_x, *ref_params)
    (ref_y * g.double()).sum().backward()
    torch.testing.assert_close(y.double(), ref_y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), ref_x.grad, rtol=1e-5, atol=1e-5)
    for p, ref in zip(params, ref_params, strict=True):
        assert p.grad.shape == p.shape and p.grad.is_contiguous()
        torch.testing.assert_close(p.grad.double(), ref.grad, rtol=1e-5, atol=1e-4)


def test_linear_leaves_to_torch_what_onednn_does_not_take(engine):
    x, layer, _ = _linear_case(64, 96, True)
    cases = {
        "engine torch": ("torch", lambda: layer(x)),
        "bf16 tensors": ("onednn", lambda: layer.to(torch.bfloat16)(x.bfloat16())),
        "autocast": ("onednn", lambda: _autocast(lambda: layer.float()(x))),
    }
    for name, (chosen, run) in cases.items():
        engine(chosen)
        with OpRecorder() as rec:
            run()
        assert rec.onednn_shapes() == [], name
    engine("torch")
    torch.testing.assert_close(layer.float()(x), F.linear(x, layer.weight, layer.bias))


def test_an_empty_batch_goes_to_torch(onednn):
    layer = Linear(8, 4)
    for shape in [(0, 8), (2, 0, 8)]:
        x = torch.randn(*shape, requires_grad=True)
        with OpRecorder() as rec:
            y = layer(x)
            y.sum().backward()
        assert y.shape == (*shape[:-1], 4) and x.grad.shape == shape
        assert rec.onednn_shapes() == []


def _autocast(fn):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


def test_row_window_grows_rows_to_a_bucket_within_the_buffer(onednn):
    x, w = torch.empty(200, 48), torch.empty(4, 48, 80)
    assert row_window(slice(0, 64), 200, x, w) == (slice(0, 64), slice(0, 64))  # a multiple
    assert row_window(slice(10, 47), 200, x, w) == (slice(10, 74), slice(0, 37))
    assert row_window(slice(180, 200), 200, x, w) == (slice(168, 200), slice(12, 32))  # the end
    assert row_window(slice(5, 5), 200, x, w) == (slice(5, 5), slice(0, 0))  # no rows
    assert row_window(slice(0, 20), 20, x[:20], w) == (slice(0, 20), slice(0, 20))  # no room
    small = torch.empty(4, 16, 80)  # a side under the bucket: torch's engine runs it
    assert row_window(slice(10, 47), 200, x, small) == (slice(10, 47), slice(0, 37))


def test_row_window_is_the_rows_on_torchs_engine(engine):
    engine("torch")
    x, w = torch.empty(200, 48), torch.empty(4, 48, 80)
    assert row_window(slice(10, 47), 200, x, w) == (slice(10, 47), slice(0, 37))


# Uneven, not multiples of the bucket: an empty expert, one under a bucket, and the last
# expert at the end of the buffer (its window reaches back into the one before).
COUNTS = [37, 0, 90, 5, 64, 41]


def _experts(kind: str, activation: str) -> GroupedExperts:
    torch.manual_seed(7)
    return GroupedExperts(n_experts=len(COUNTS), d_model=48, d_ff=80, activation=activation,
                          out_std=0.1, kind=kind, compute="loop")  # fmt: skip


def _loop_step(experts, x_SD, g_SD, forward="forward_loop"):
    x = x_SD.clone().requires_grad_(True)
    y = getattr(experts, forward)(x, COUNTS)
    (y * g_SD).sum().backward()
    out = [y.detach(), x.grad] + [p.grad.clone() for p in experts.parameters()]
    experts.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize(
    ("kind", "activation"), [("mlp", "gelu"), ("mlp", "relu"), ("mlp", "silu"), ("swiglu", "")]
)
def test_expert_loop_on_onednn_matches_the_float64_loop(onednn, kind, activation):
    experts = _experts(kind, activation or "silu")
    gen = torch.Generator().manual_seed(1)
    x_SD, g_SD = (
        torch.randn(sum(COUNTS), 48, generator=gen),
        torch.randn(sum(COUNTS), 48, generator=gen),
    )
    with OpRecorder() as rec:
        got = _loop_step(experts, x_SD, g_SD)
    assert rec.onednn_shapes(), "the loop did not run on oneDNN"
    ref = _loop_step(experts.double(), x_SD.double(), g_SD.double(), "forward_autograd_loop")
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[2][1], torch.zeros(48, 80))  # expert 1 had no rows


def test_onednn_sees_only_bucketed_row_counts(onednn):
    """A new shape costs oneDNN a kernel build (0.3-0.7 ms): every matmul of the loop is on
    a multiple of ROW_BUCKET rows, so a run meets a few dozen shapes, not one per count."""
    experts = _experts("swiglu", "silu")
    x_SD, g_SD = torch.randn(sum(COUNTS), 48), torch.randn(sum(COUNTS), 48)
    with OpRecorder() as rec:
        _loop_step(experts, x_SD, g_SD)
    sides = {side for shapes in rec.onednn_shapes() for shape in shapes for side in shape}
    rows = sides - {48, 80}  # D and H: every other side is a number of rows
    assert rows and all(n % ROW_BUCKET == 0 for n in rows), sorted(rows)


def test_expert_loop_on_onednn_is_deterministic_and_the_same_on_threads(
    onednn, torch_threads, monkeypatch
):
    experts = _experts("mlp", "gelu")
    x_SD, g_SD = torch.randn(sum(COUNTS), 48), torch.randn(sum(COUNTS), 48)
    torch_threads(1)
    first, second = _loop_step(experts, x_SD, g_SD), _loop_step(experts, x_SD, g_SD)
    torch_threads(2)
    monkeypatch.setattr(moe_loop, "THREAD_MIN_WEIGHTS", 48 * 80)
    assert moe_loop.expert_threads(x_SD, COUNTS, list(experts.parameters())) is not None
    threaded = _loop_step(experts, x_SD, g_SD)
    for a, b, c in zip(first, second, threaded, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
