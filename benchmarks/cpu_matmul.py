"""Benchmark: fp32 matmuls on this CPU, torch's default engine (MKL on x86) against oneDNN
(`sm_toolkit.models.cpu_matmul`), side by side in one process, at 1 and 2 threads.

Shapes: a 2048^3 product (the GEMM rate `moe_lm_throughput.py` compares with), the dense
FFN of `moe_layer.py` (4096 tokens, D 256, H 2048: forward, input gradient, weight
gradient) and one expert of it (1024 rows, D 256, H 1024). Each round times every shape on
both engines in turn; the figure is the median over rounds, and the ratio the median of the
per-round ratios (oneDNN's GFLOP/s over torch's). Also printed:

- `error`: the largest relative error of each engine's product against a float64 product
  (2048^3), so an engine that computed in reduced precision would show (bf16: ~1e-2);
- `first_call_ms`: what oneDNN pays the first time a shape comes (it builds a kernel per
  shape) against the same call once built, over 20 new row counts of an expert's matmul;
  the reason `cpu_matmul.row_window` rounds an expert's rows up to ROW_BUCKET.

    .venv/bin/python benchmarks/cpu_matmul.py             # ~1 min
    .venv/bin/python benchmarks/cpu_matmul.py --rounds 3  # quicker, noisier

Last line: one JSON object: the engine `auto` picks here, the CPU facts it read, and per
thread count each shape's GFLOP/s on both engines and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sm_toolkit.models import cpu_matmul

# name: (rows, inner, cols) of a [rows, inner] @ [inner, cols] product, and which operand
# is a transposed view (as in a backward: the weight gradient's left one)
SHAPES = {
    "gemm_2048": ((2048, 2048, 2048), ""),
    "dense_forward": ((4096, 256, 2048), ""),
    "dense_input_grad": ((4096, 2048, 256), "b"),
    "dense_weight_grad": ((256, 4096, 2048), "a"),
    "expert_forward": ((1024, 256, 1024), ""),
    "expert_weight_grad": ((256, 1024, 1024), "a"),
}


def operands(shape: tuple[int, int, int], transposed: str) -> tuple[torch.Tensor, torch.Tensor]:
    m, k, n = shape
    gen = torch.Generator().manual_seed(m + k + n)
    a = torch.randn(k, m, generator=gen).t() if "a" in transposed else torch.randn(m, k)
    b = torch.randn(n, k, generator=gen).t() if "b" in transposed else torch.randn(k, n)
    return a, b


def on(engine: str, a: torch.Tensor, b: torch.Tensor) -> float:
    with cpu_matmul.using(engine):
        t0 = time.perf_counter()
        cpu_matmul.mm(a, b)
        return time.perf_counter() - t0


def rates(rounds: int) -> dict[str, dict[str, float]]:
    pairs = {name: operands(*spec) for name, spec in SHAPES.items()}
    for a, b in pairs.values():  # warm-up: oneDNN builds its kernels here
        on("torch", a, b), on("onednn", a, b)
    took: dict[str, dict[str, list[float]]] = {n: {"torch": [], "onednn": []} for n in SHAPES}
    for _ in range(rounds):
        for name, (a, b) in pairs.items():
            for engine in ("torch", "onednn"):
                took[name][engine].append(on(engine, a, b))
    out = {}
    for name, (shape, _) in SHAPES.items():
        flop = 2 * shape[0] * shape[1] * shape[2]
        t, o = took[name]["torch"], took[name]["onednn"]
        out[name] = {
            "torch_gflops": round(flop / statistics.median(t) / 1e9, 1),
            "onednn_gflops": round(flop / statistics.median(o) / 1e9, 1),
            "onednn_x_torch": round(statistics.median(a / b for a, b in zip(t, o, strict=True)), 2),
        }
    return out


def errors() -> dict[str, float]:
    a, b = operands((2048, 2048, 2048), "")
    exact = a.double() @ b.double()
    out = {}
    for engine in ("torch", "onednn"):
        with cpu_matmul.using(engine):
            got = cpu_matmul.mm(a, b).double()
        out[engine] = float(((got - exact).abs().max() / exact.abs().max()).item())
    out["bf16"] = float(
        (((a.bfloat16() @ b.bfloat16()).double() - exact).abs().max() / exact.abs().max()).item()
    )
    return out


def first_call_ms(new_shapes: int = 20) -> dict[str, float]:
    """oneDNN, an expert's forward: a row count it has not seen, then the same one again."""
    w = torch.randn(256, 1024)
    first, again = [], []
    for i in range(new_shapes):
        x = torch.randn(1000 + 7 * i + 1, 256)  # counts no other call here used
        first.append(on("onednn", x, w))
        again.append(on("onednn", x, w))
    return {
        "first_ms": round(statistics.median(first) * 1e3, 2),
        "again_ms": round(statistics.median(again) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default="1,2", help="torch thread counts, in turn")
    args = parser.parse_args()
    chosen = cpu_matmul.engine()  # what `auto` picks on this machine
    vendor, family, capability = cpu_matmul._cpu_facts()
    print(f"CPU: {vendor or 'unknown vendor'}, family {family}, torch capability {capability}; "
          f"cpu_matmul auto -> {chosen}")  # fmt: skip
    result: dict[str, object] = {
        "auto": chosen, "vendor": vendor, "family": family, "capability": capability,
    }  # fmt: skip
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        table = rates(args.rounds)
        print(f"\n{threads} thread(s), {args.rounds} interleaved rounds")
        print("| shape (M x K x N) | torch GFLOP/s | oneDNN GFLOP/s | oneDNN x torch |")
        print("|---|---|---|---|")
        for name, row in table.items():
            m, k, n = SHAPES[name][0]
            print(f"| {name} ({m} x {k} x {n}) | {row['torch_gflops']} | "
                  f"{row['onednn_gflops']} | {row['onednn_x_torch']} |")  # fmt: skip
        result[f"threads_{threads}"] = table
    torch.set_num_threads(1)
    result["error_vs_float64"] = errors()
    result["first_call"] = first_call_ms()
    print(f"\nrelative error vs float64 (2048^3): {result['error_vs_float64']}")
    print(f"oneDNN, a new row count vs the same again (1 thread): {result['first_call']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
