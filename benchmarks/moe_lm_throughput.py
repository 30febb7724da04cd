"""Benchmark: a full MoE LM training step (forward, backward, AdamW) against this machine's
own fp32 GEMM rate, measured in the same run; and activation offloading / checkpointing.

Model FLOPs per token (PaLM's accounting, as nanoGPT's MFU): 6 x the parameters a token
uses (attention, router, its top-k experts, lm_head; not the embedding lookups) plus
12 x n_layer x block_size x d_model for the attention scores. Achieved FLOP/s = that x
tokens/s. The GEMM rate is the better of two 2048^3 fp32 matmuls on the engine the model's
matmuls run on (sm_toolkit/models/cpu_matmul.py: oneDNN where `auto` picks it, else torch's
MKL), measured at the start of every round, just before that round's steps: "x GEMM rate"
is the median over the rounds of each step's rate against its round's GEMM rate (on a
shared VM the speed drifts by 20-30 % over minutes, and a neighbour's load is then seen by
both), "x best GEMM" the median step against the best GEMM rate of the run. torch's own
rate is printed beside it. On a GPU the same ratio is the MFU against the measured peak
(benchmarks/gpu_check.py). The optimizer is the trainer's (sm_toolkit/train/optim.py:
AdamW over its parameter groups, fused).

Variants (the same model, batch and seed): base; activation checkpointing; activation
offloading (saved tensors to CPU memory via torch.autograd.graph.save_on_cpu; on a CPU
device this can only cost time: the tensors are in CPU memory already); SwiGLU experts;
and, where the engine is oneDNN, `base_torch_engine`: the base model on torch's engine.
Peak extra memory of one step: torch's MemTracker (every storage allocated during it);
minor page faults per step from getrusage. glibc's malloc is set as the trainer sets it
(`--keep_freed_memory True`: sm_toolkit/runtime/allocator.py); `--malloc glibc` leaves its
defaults, and `--malloc-ab N` times the base step both ways, each in a fresh process, in
turn for N rounds (mallopt is process-wide), and prints the paired ratio.

    .venv/bin/python benchmarks/moe_lm_throughput.py            # default size, ~2 min
    .venv/bin/python benchmarks/moe_lm_throughput.py --steps 3  # quicker, noisier
    .venv/bin/python benchmarks/moe_lm_throughput.py --malloc-ab 8 --steps 6 --threads 2

Last line: one JSON object (tokens_per_s, model_flops_per_s, gemm_flops_per_s (the rounds'
median), best_gemm_flops_per_s, fraction_of_gemm, fraction_of_best_gemm, malloc, and
per-variant step ms / fractions / peak MiB / faults per step); with
--malloc-ab, each way's median step ms and faults and glibc_over_keep.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.distributed._tools.mem_tracker import MemTracker

from sm_toolkit.models import cpu_matmul
from sm_toolkit.models.moe import MoEConfig, MoETransformer
from sm_toolkit.runtime import allocator
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.optim import build_optimizer, param_groups

VOCAB, BATCH = 96, 32


def model_flops_per_token(config: MoEConfig) -> float:
    """6 x active parameters + attention scores, per token (forward + backward)."""
    d, h, k = config.d_model, config.d_ff, config.top_k
    mats = 3 if config.expert_kind == "swiglu" else 2
    attention = 4 * d * d
    ffn_moe = k * mats * d * h + d * config.n_experts + config.shared_expert_d_ff * 2 * d
    n_moe = len(config.moe_layers)
    active = config.n_layer * attention + n_moe * ffn_moe
    active += (config.n_layer - n_moe) * 2 * d * h + d * config.vocab_size  # dense FFN, head
    return 6 * active + 12 * config.n_layer * config.block_size * d


def gemm_rate(n: int = 2048, repeats: int = 3, engine: str = "auto") -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    with cpu_matmul.using(engine):
        cpu_matmul.mm(a, b)
        best = min(_timed(lambda: cpu_matmul.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_step(config: MoEConfig, offload: bool, engine: str = "auto"):
    torch.manual_seed(0)
    model = MoETransformer(config)
    train = TrainConfig(lr=1e-3, weight_decay=0.1)  # the trainer's optimizer: fused AdamW
    opt = build_optimizer(train, param_groups(model, train.weight_decay))
    idx = torch.randint(0, VOCAB, (BATCH, config.block_size + 1))

    def step() -> None:
        hooks = torch.autograd.graph.save_on_cpu() if offload else contextlib.nullcontext()
        with cpu_matmul.using(engine):
            with hooks:
                logits, aux = model(idx[:, :-1])
                loss = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()) + aux.loss
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def peak_mib(model, step) -> float:
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        start = tracker.get_tracker_snapshot("current")
        step()
    peak = tracker.get_tracker_snapshot("peak")
    dev = torch.device("cpu")
    return (peak[dev]["Total"] - start.get(dev, {}).get("Total", 0)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--variants", default="", help="comma-separated subset (default: all)")
    parser.add_argument(
        "--malloc", default="keep", choices=("keep", "glibc"),
        help="keep: freed memory kept for the next step, as the trainer does "
        "(--keep_freed_memory True, sm_toolkit/runtime/allocator.py); glibc: its defaults",
    )  # fmt: skip
    parser.add_argument(
        "--malloc-ab", type=int, default=0, metavar="ROUNDS",
        help="time the base variant in fresh processes, keep and glibc in turn, ROUNDS each",
    )  # fmt: skip
    args = parser.parse_args()
    if args.malloc_ab:
        return malloc_ab(args.malloc_ab, args.steps, args.threads)
    if args.malloc == "keep" and not allocator.keep_freed_memory():
        raise SystemExit("--malloc keep: this C library's mallopt refused (glibc only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = MoEConfig(vocab_size=VOCAB, dropless=True)
    variants = {
        "base": (base, False),
        "checkpointing": (dataclasses.replace(base, activation_checkpointing=True), False),
        "offloading": (base, True),
        "swiglu": (dataclasses.replace(base, expert_kind="swiglu", d_ff=168), False),
    }
    engine = cpu_matmul.engine()
    if engine == "onednn":
        variants["base_torch_engine"] = (base, False)
    if args.variants:
        chosen = {"base", *args.variants.split(",")}  # base: the figures are relative to it
        if chosen - set(variants):
            unknown = ", ".join(sorted(chosen - set(variants)))
            raise SystemExit(f"--variants: {unknown} not one of {', '.join(variants)}")
        variants = {n: v for n, v in variants.items() if n in chosen}
    steps = {
        name: make_step(cfg, off, "torch" if name.endswith("_torch_engine") else "auto")
        for name, (cfg, off) in variants.items()
    }
    for _ in range(2):  # warm-up (the expert compute probe; oneDNN's kernels for new shapes)
        for _, step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    faults: dict[str, list[int]] = {name: [] for name in steps}
    gemm_rate(), gemm_rate(engine="torch")  # warm-up
    gemm: list[float] = []  # each round's GEMM rate, paired with that round's steps
    torch_gemm: list[float] = []
    names = list(steps)
    for round_ in range(args.steps):  # interleaved, so load drifts hit every variant alike
        gemm.append(gemm_rate(repeats=2))
        # Each round starts one variant later: the step right after the GEMMs ran 2-9 %
        # slower than the same arithmetic elsewhere in the round (base vs offloading).
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            step = steps[name][1]
            before = _minor_faults()
            times[name].append(_timed(step))
            faults[name].append(_minor_faults() - before)
        torch_gemm.append(gemm_rate(repeats=1, engine="torch"))
    memory = {name: peak_mib(model, step) for name, (model, step) in steps.items()}
    report(variants, times, faults, memory, (gemm, torch_gemm, engine), args.malloc)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def malloc_ab(rounds: int, steps: int, threads: int) -> None:
    """The base step with the trainer's malloc setting and with glibc's defaults, each in
    a fresh process (mallopt is process-wide), in turn; the ratio is paired per round."""
    step_ms: dict[str, list[float]] = {"keep": [], "glibc": []}
    faults: dict[str, list[float]] = {"keep": [], "glibc": []}
    for _ in range(rounds):
        for mode in step_ms:
            command = [sys.executable, __file__, "--variants", "base", "--steps", str(steps),
                       "--threads", str(threads), "--malloc", mode]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            base = json.loads(out.stdout.splitlines()[-1])["base"]
            step_ms[mode].append(base["step_ms"])
            faults[mode].append(base["faults_per_step"])
            print(f"{mode}: base step {base['step_ms']} ms, {base['faults_per_step']:.0f} faults")
    ratios = [g / k for k, g in zip(step_ms["keep"], step_ms["glibc"], strict=True)]
    print(json.dumps({
        "threads": threads or torch.get_num_threads(), "rounds": rounds,
        **{f"{m}_step_ms": statistics.median(v) for m, v in step_ms.items()},
        **{f"{m}_faults_per_step": statistics.median(v) for m, v in faults.items()},
        "glibc_over_keep": round(statistics.median(ratios), 3),
    }))  # fmt: skip


def report(variants, times, faults, memory, rates, malloc: str) -> None:
    """x GEMM rate: each round's step against the GEMM rate measured just before it, the
    median of those ratios (this VM's speed drifts by 20-30 % over minutes); x best GEMM:
    the median step against the run's best GEMM rate, the stricter figure."""
    gemm, torch_gemm, engine = rates
    out: dict[str, object] = {}
    tokens = BATCH * variants["base"][0].block_size
    print(
        f"MoE LM training step, batch {BATCH} x {variants['base'][0].block_size} tokens, fp32, "
        f"{torch.get_num_threads()} threads; matmuls on {engine}; fp32 GEMM rate "
        f"{min(gemm) / 1e9:.0f}-{max(gemm) / 1e9:.0f} GFLOP/s on {engine} over the rounds "
        f"({max(torch_gemm) / 1e9:.0f} at best on torch's engine); malloc: {malloc}"
    )
    print("| variant | median step ms | tokens/s | model GFLOP/s | x GEMM rate | x best GEMM "
          "| peak MiB | faults |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    summary: dict[str, object] = {}
    for name, (config, _) in variants.items():
        flops = model_flops_per_token(config) * tokens
        step_s = statistics.median(times[name])
        rate, step_faults = flops / step_s, statistics.median(faults[name])
        paired = statistics.median(flops / t / g for t, g in zip(times[name], gemm, strict=True))
        best = rate / max(gemm)
        print(f"| {name} | {step_s * 1e3:.1f} | {tokens / step_s:.0f} | {rate / 1e9:.1f} | "
              f"{paired:.2f} | {best:.2f} | {memory[name]:.1f} | {step_faults:.0f} |")  # fmt: skip
        out[name] = {"step_ms": round(step_s * 1e3, 1), "peak_mib": round(memory[name], 1),
                     "fraction_of_gemm": round(paired, 3), "fraction_of_best_gemm": round(best, 3),
                     "faults_per_step": step_faults}  # fmt: skip
        if name == "base":
            summary = {
                "tokens_per_s": round(tokens / step_s, 1),
                "model_flops_per_s": round(rate),
                "cpu_matmul": engine,
                "malloc": malloc,
                "gemm_flops_per_s": round(statistics.median(gemm)),
                "best_gemm_flops_per_s": round(max(gemm)),
                "torch_engine_gemm_flops_per_s": round(max(torch_gemm)),
                "fraction_of_gemm": round(paired, 3),
                "fraction_of_best_gemm": round(best, 3),
            }
    print(json.dumps({**summary, **out}))


if __name__ == "__main__":
    main()
