"""Benchmark: one MoE layer against a dense FFN with the same active FLOPs (CPU, fp32).

Shapes: N = 4096 tokens, d_model = 256, expert d_ff = 1024, top-2; the dense FFN has
d_ff = top_k * 1024 = 2048, so both do the same matmul FLOPs per token. SwiGLU experts (and
Hugging Face's Mixtral block, when `transformers` is installed: `pip install .[bench]`)
have three matrices, so their intermediate width is 2/3 of 1024, rounded to 680 (a
multiple of 8, which grouped_mm needs): equal active FLOPs within 0.4 %. Expert variants:
`loop` (one matmul per expert, `moe_loop.LoopExperts`; at 2+ threads it runs whole experts
of 256 rows or fewer across worker threads, here the 32-expert ones, and
`dropless_serial_e32` is that loop one expert at a time over all threads), `grouped`
(torch.nn.functional.grouped_mm, on a device dispatch plan), and the default `auto` (the
faster of the two by the median of five paired timings, once per device and shape). One
timed step is forward + backward (router, balance loss and z-loss included for the MoE).
Every variant is built in this one process and the repeats are interleaved round-robin,
so a neighbour loading the machine slows all variants alike. The reported ratio is the
median over rounds of (variant time / dense time in the same round): pairing within a
round cancels the slow drift of a shared machine's load better than a ratio of two
separate medians (also shown).

Page faults: the minor faults of a variant's last timed step. glibc's malloc hands
allocations of 32 MiB and more straight to mmap and gives them back on free: the dense
FFN's [4096, 2048] hidden, and at 32 experts each [E, D, H] weight gradient (new every
step, as after `zero_grad()`). Such a step writes fresh pages, which the kernel zeroes one
at a time (8k faults per 32 MiB; 9-16 % of a step on this VM). Which variant pays depends
on what ran before it in the process. `--malloc` sets glibc as sm_toolkit/runtime/
allocator.py does: `glibc` leaves its defaults; `keep` is the training entrypoints' setting
(`--keep_freed_memory True`: nothing is trimmed, and a block of 32 MiB or more is mapped
only when the heap has no free room for it; measured, the dense FFN's 32 MiB hidden found
room and did not fault); `no-mmap` keeps everything (no mmap, no trimming), so no variant
faults once warm and the ratios compare the arithmetic alone. (`MALLOC_MMAP_THRESHOLD_` in
the environment does not: glibc still maps and unmaps some of these blocks.)

Peak extra memory: `torch.distributed._tools.mem_tracker.MemTracker`, a TorchDispatchMode
that accounts for every tensor storage allocated and freed (activations, temporaries,
gradients) during one step; extra = peak - live bytes at the start of the step (parameters,
input and upstream gradient, grads cleared). The ratio is the worst MoE variant's extra
memory over the dense FFN's.

    .venv/bin/python benchmarks/moe_layer.py              # 1 then 2 threads, ~6 min
    .venv/bin/python benchmarks/moe_layer.py --threads 1 --rounds 3   # quicker, noisier
    .venv/bin/python benchmarks/moe_layer.py --malloc no-mmap         # arithmetic alone
    .venv/bin/python benchmarks/moe_layer.py --malloc keep            # as the trainer runs
    .venv/bin/python benchmarks/moe_layer.py --parts                  # + where the time goes

`--parts` adds two variants per expert count that split a dropless MLP layer's step in two:
`experts_only_e*` runs the experts alone (the same `auto` path, on its own 8192 rows evenly
split, as a router would split them at perfect balance), and `routing_only_e*` runs
everything else: the layer with experts that hand their rows back unchanged (router,
balance and z-loss, the sort, the gather, the gate-weighted scatter, and their backward).

Matmul engine (`--cpu-matmul`, default `auto`, see sm_toolkit/models/cpu_matmul.py): every
variant of ours, the dense FFN included, runs on the engine chosen, so "x dense" compares
like with like. Where that engine is oneDNN, `dense_torch` and `swiglu_dropless_torch_e*`
run the same modules on torch's default engine (MKL), side by side: how much the engine
gives. Hugging Face's block runs as torch runs it (its nn.Linear / grouped_mm), so
`swiglu_vs_mixtral_*` includes the engine's gain and `swiglu_torch_vs_mixtral_*` (our
SwiGLU experts on torch's engine) does not.

The last line printed is one JSON object of paired ratios to dense, the worse of the thread
counts for each key: dropless_e8, dropless_e32, capacity_e8, capacity_e32 (capacity factor
1.25), swiglu_dropless_e8, swiglu_dropless_e32, the loop/grouped variants, memory_ratio,
and `per_threads` with each thread count's own ratios. With transformers (null without):
mixtral_e8, mixtral_e32 (the block's own per-expert loop), mixtral_grouped_e8/_e32 (its
grouped_mm experts, transformers 5's default in a model), and swiglu_vs_mixtral_e8/_e32,
swiglu_vs_mixtral_grouped_e8/_e32: how many times faster our SwiGLU experts are than that
block (median of per-round time ratios; for these keys the worse thread count is the lower);
`cpu_matmul`, the engine the variants ran on; with oneDNN also dense_torch,
swiglu_dropless_torch_e8/_e32 and swiglu_torch_vs_mixtral_e8/_e32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.distributed._tools.mem_tracker import MemTracker

from sm_toolkit.models import cpu_matmul, moe_loop
from sm_toolkit.models.moe_experts import FeedForward, GroupedExperts, balanced_counts
from sm_toolkit.models.moe_layer import DispatchConfig, MoELayer
from sm_toolkit.models.moe_router import RouterConfig, TopKRouter
from sm_toolkit.runtime import allocator

TOKENS, D_MODEL, D_FF, TOP_K = 4096, 256, 1024, 2
SWIGLU_D_FF = 680  # 2/3 of D_FF, rounded to a multiple of 8
# --malloc other than glibc (its defaults): what glibc maps, allocator.keep_freed_memory's up_to
MALLOC = {"keep": allocator.MMAP_THRESHOLD_MAX, "no-mmap": None}
MIXTRAL_KEYS = tuple(
    f"{key}_e{e}" for e in (8, 32)
    for key in ("mixtral", "mixtral_grouped", "swiglu_vs_mixtral", "swiglu_vs_mixtral_grouped")
)  # fmt: skip


def make_moe(
    n_experts: int, dispatch: DispatchConfig, kind: str = "mlp", compute: str = "auto"
) -> MoELayer:
    router = TopKRouter(RouterConfig(d_model=D_MODEL, n_experts=n_experts, top_k=TOP_K))
    experts = GroupedExperts(
        n_experts=n_experts, d_model=D_MODEL, d_ff=SWIGLU_D_FF if kind == "swiglu" else D_FF,
        activation="gelu", out_std=0.02, kind=kind, compute=compute,
    )  # fmt: skip
    return MoELayer(
        router=router, experts=experts, dispatch=dispatch, aux_loss_weight=0.01, z_loss_weight=1e-3
    )


def make_mixtral(n_experts: int, implementation: str = "eager") -> nn.Module | None:
    """Hugging Face's Mixtral sparse MoE block (SwiGLU experts), or None without transformers.

    `eager` is the block's own per-expert loop (what a block built on its own runs);
    `grouped_mm` is what transformers 5 picks by default inside a model when torch has
    grouped_mm. The block's parameters are created with torch.empty, and only a model's
    `_init_weights` fills them, so they are initialised here as that does (normal, std =
    initializer_range, router and experts): left as they were, the router read NaNs.
    """
    try:
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except ImportError:
        return None
    config = MixtralConfig(
        hidden_size=D_MODEL, intermediate_size=SWIGLU_D_FF, num_local_experts=n_experts,
        num_experts_per_tok=TOP_K, experts_implementation=implementation,
    )  # fmt: skip
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0.0, config.initializer_range)
    return block


class ExpertsAlone(nn.Module):
    """The experts of a dropless layer without the layer: forward + backward over their own
    TOP_K x TOKENS rows, split evenly (perfect balance), with their own upstream gradient."""

    def __init__(self, experts: GroupedExperts) -> None:
        super().__init__()
        self.experts = experts
        gen = torch.Generator().manual_seed(1)
        rows = TOP_K * TOKENS
        # a parameter, so the step's zero_grad clears its gradient with the experts'
        self.x_SD = nn.Parameter(torch.randn(rows, D_MODEL, generator=gen))
        self.g_SD = torch.randn(rows, D_MODEL, generator=gen)
        self.counts = balanced_counts(rows, experts.n_experts)

    def forward(self) -> torch.Tensor:
        return self.experts(self.x_SD, self.counts)


class PassThroughExperts(nn.Module):
    """Experts that hand their rows back unchanged: the layer around them is all that runs."""

    def __init__(self, n_experts: int) -> None:
        super().__init__()
        self.n_experts = n_experts

    def forward(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        return x_SD


def make_parts(n_experts: int) -> dict[str, nn.Module]:
    """The two halves of `dropless_e{n}`'s step (see --parts in the module docstring)."""
    routing = make_moe(n_experts, DispatchConfig(dropless=True))
    experts = routing.experts
    routing.experts = PassThroughExperts(n_experts)
    return {
        f"experts_only_e{n_experts}": ExpertsAlone(experts),
        f"routing_only_e{n_experts}": routing,
    }


def make_variants(parts: bool = False, torch_engine: bool = False) -> dict[str, nn.Module]:
    """Every variant; `torch_engine` adds the dense FFN and SwiGLU experts on torch's engine."""
    variants: dict[str, nn.Module] = {
        "dense": FeedForward(d_model=D_MODEL, d_ff=TOP_K * D_FF, activation="gelu", out_std=0.02)
    }
    if torch_engine:
        variants["dense_torch"] = variants["dense"]
    dropless = DispatchConfig(dropless=True)
    for e in (8, 32):
        variants[f"dropless_e{e}"] = make_moe(e, dropless)
        variants[f"dropless_loop_e{e}"] = make_moe(e, dropless, compute="loop")
        variants[f"dropless_grouped_e{e}"] = make_moe(e, dropless, compute="grouped")
        if e == 32:  # 256 rows an expert: the loop runs its experts across threads
            variants[f"dropless_serial_e{e}"] = make_moe(e, dropless, compute="loop")
        variants[f"swiglu_dropless_e{e}"] = make_moe(e, dropless, kind="swiglu")
        if torch_engine:
            variants[f"swiglu_dropless_torch_e{e}"] = variants[f"swiglu_dropless_e{e}"]
        variants[f"capacity_e{e}"] = make_moe(e, DispatchConfig(capacity_factor=1.25))
        variants[f"padded_e{e}"] = make_moe(
            e, DispatchConfig(capacity_factor=1.25, compute="padded")
        )
        for key, implementation in (("mixtral", "eager"), ("mixtral_grouped", "grouped_mm")):
            mixtral = make_mixtral(e, implementation)
            if mixtral is not None:
                variants[f"{key}_e{e}"] = mixtral
        if parts:
            variants.update(make_parts(e))
    return variants


@contextlib.contextmanager
def serial_loop():
    """The loop's experts one after another, each matmul over all intra-op threads."""
    saved = moe_loop.USE_THREADS
    moe_loop.USE_THREADS = False
    try:
        yield
    finally:
        moe_loop.USE_THREADS = saved


def step_fn(
    module: nn.Module, x_ND: torch.Tensor, g_ND: torch.Tensor, name: str = ""
) -> Callable[[], None]:
    """One forward + backward of the variant `name` (`_serial_`: experts one after another;
    `_torch`: on torch's matmul engine)."""
    on_torch, serial = "_torch" in name, "_serial_" in name

    def step() -> None:
        engine = cpu_matmul.using("torch") if on_torch else contextlib.nullcontext()
        with engine, serial_loop() if serial else contextlib.nullcontext():
            if isinstance(module, MoELayer):  # (y, aux_loss, stats)
                y_ND, aux, _ = module(x_ND)
                loss = (y_ND * g_ND).sum() + aux
            elif isinstance(module, FeedForward):
                loss = (module(x_ND) * g_ND).sum()
            elif isinstance(module, ExpertsAlone):
                loss = (module() * module.g_SD).sum()
            else:  # Mixtral block: (B, T, D) in; y or (y, router_logits) out
                out = module(x_ND[None])
                loss = ((out[0] if isinstance(out, tuple) else out)[0] * g_ND).sum()
            loss.backward()
        module.zero_grad(set_to_none=True)
        x_ND.grad = None

    return step


def peak_extra_bytes(
    module: nn.Module, x_ND: torch.Tensor, g_ND: torch.Tensor, name: str = ""
) -> int:
    step = step_fn(module, x_ND, g_ND, name)
    tracker = MemTracker()
    tracker.track_external(module, x_ND, g_ND)
    with tracker:
        start = tracker.get_tracker_snapshot("current")
        step()
    peak = tracker.get_tracker_snapshot("peak")
    device = x_ND.device
    return peak[device]["Total"] - start.get(device, {}).get("Total", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed repeats per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", default="1,2", help="torch thread counts, in turn")
    parser.add_argument(
        "--malloc", default="glibc", choices=("glibc", *MALLOC),
        help="glibc: its defaults; keep: as the trainer sets it (blocks under 32 MiB kept); "
        "no-mmap: every freed block kept, so no step writes fresh pages",
    )  # fmt: skip
    parser.add_argument(
        "--parts", action="store_true",
        help="also time the experts alone and the layer without its experts (routing)",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-matmul", default="auto", choices=cpu_matmul.ENGINES,
        help="the fp32 matmul engine of every variant of ours (sm_toolkit/models/cpu_matmul.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.malloc in MALLOC and not allocator.keep_freed_memory(up_to=MALLOC[args.malloc]):
        raise SystemExit(f"--malloc {args.malloc}: this C library's mallopt refused (glibc only)")
    cpu_matmul.set_engine(args.cpu_matmul)
    engine = cpu_matmul.engine()
    print(f"fp32 matmuls of our variants: {engine} (--cpu-matmul {args.cpu_matmul})")
    torch.manual_seed(0)
    x_ND = torch.randn(TOKENS, D_MODEL, requires_grad=True)
    g_ND = torch.randn(TOKENS, D_MODEL)
    variants = make_variants(parts=args.parts, torch_engine=engine == "onednn")
    for name, module in variants.items():  # once outside the tracker: `auto` probes here
        step_fn(module, x_ND, g_ND, name)()
    memory = {name: peak_extra_bytes(m, x_ND, g_ND, name) for name, m in variants.items()}
    per_threads = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        times, faults = time_variants(variants, x_ND, g_ND, args.warmup, args.rounds)
        per_threads[str(threads)] = report(variants, times, memory, args.rounds, faults)
    keys = [*per_threads[next(iter(per_threads))]]
    worse = {k: min if "_vs_" in k else max for k in keys}  # x faster than: higher is better
    result = {k: worse[k](r[k] for r in per_threads.values()) for k in keys if k != "dense_ms"}
    for key in MIXTRAL_KEYS:
        result.setdefault(key, None)
    result["cpu_matmul"] = engine
    result["malloc"] = args.malloc
    result["per_threads"] = per_threads
    print(json.dumps(result))


def time_variants(
    variants, x_ND, g_ND, warmup: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Interleaved round-robin timing of every variant at the current thread count: the
    times, and the page faults of each variant's last step."""
    steps = {name: step_fn(m, x_ND, g_ND, name) for name, m in variants.items()}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    last_faults: dict[str, int] = {}
    for _ in range(rounds):
        for name, step in steps.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
            last_faults[name] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return times, last_faults


def paired_ratio(times: list[float], baseline: list[float]) -> float:
    """The median over rounds of time / baseline time in the same round."""
    return statistics.median(t / b for t, b in zip(times, baseline, strict=True))


def report(
    variants: dict[str, nn.Module],
    times: dict[str, list[float]],
    memory: dict[str, int],
    rounds: int,
    faults: dict[str, int] | None = None,
) -> dict[str, float]:
    median = {name: statistics.median(ts) for name, ts in times.items()}
    dense = median["dense"]
    paired = {name: paired_ratio(ts, times["dense"]) for name, ts in times.items()}
    faults = faults or {}
    print(f"MoE layer vs dense FFN, fwd+bwd, N={TOKENS} D={D_MODEL} H={D_FF} k={TOP_K}, fp32, "
          f"{torch.get_num_threads()} threads, {rounds} interleaved rounds")  # fmt: skip
    print(
        "| variant | median ms | min ms | x dense (paired) | x dense (medians) | "
        "peak extra MiB | x dense memory | page faults |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in variants:
        print(
            f"| {name} | {median[name] * 1e3:.1f} | {min(times[name]) * 1e3:.1f} | "
            f"{paired[name]:.2f} | {median[name] / dense:.2f} | {memory[name] / 2**20:.1f} | "
            f"{memory[name] / memory['dense']:.2f} | {faults.get(name, '')} |"
        )
    result = {key: round(paired[key], 3) for key in paired if key != "dense"}
    for name in times:  # how many times faster our SwiGLU experts are, paired per round
        if name.startswith("mixtral"):
            experts = name.rsplit("_", 1)[1]
            for ours, variant in (
                ("swiglu", "swiglu_dropless"),
                ("swiglu_torch", "swiglu_dropless_torch"),
            ):
                if f"{variant}_{experts}" in times:
                    ratio = paired_ratio(times[name], times[f"{variant}_{experts}"])
                    result[name.replace("mixtral", f"{ours}_vs_mixtral", 1)] = round(ratio, 3)
    result["memory_ratio"] = round(
        max(m for k, m in memory.items() if k != "dense" and "mixtral" not in k) / memory["dense"],
        3,
    )
    result["dense_ms"] = round(dense * 1e3, 1)
    auto = {
        name: m.experts.compute
        for name, m in variants.items()
        if isinstance(m, MoELayer) and isinstance(m.experts, GroupedExperts)
    }
    print(
        f"auto chose: {sorted(set(_choices()))} (explicit computes: {sorted(set(auto.values()))})"
    )
    return result


def _choices() -> list[str]:
    from sm_toolkit.models.moe_experts import _CHOICE

    return [f"{k[1]} e{k[2]}: {v}" for k, v in _CHOICE.items()]


if __name__ == "__main__":
    main()
