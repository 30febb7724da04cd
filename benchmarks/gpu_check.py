"""GPU check: the code paths CI cannot run, in one short script (<= 8 min on one GPU).

Sections, each timed and caught on its own so the one JSON line always prints:
  nccl      a backend="nccl" process group (world 1 on one GPU) and the trainer's own
            collectives through it: 5 training steps with two ranks claimed, so every
            loss / stop-flag reduction really goes through NCCL (a CPU tensor would fail)
  bf16      a MoE LM step under bf16 autocast: finite loss, close to fp32
  compile   torch.compile of the dense FFN and of one MoE layer: output vs eager
  layer     MoE layer fwd+bwd vs a FLOP-matched dense FFN, bf16: loop, grouped_mm, auto
  lm        a few hundred MoE LM training steps (bf16 autocast, AdamW): step time,
            tokens/s, model FLOP/s and MFU against this GPU's bf16 GEMM rate measured here

    python benchmarks/gpu_check.py               # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --cpu-dry-run # the same code on CPU, tiny sizes, gloo

Without a GPU (and without --cpu-dry-run) it prints one JSON line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from moe_lm_throughput import model_flops_per_token  # noqa: E402

from sm_toolkit.models.moe import MoEConfig, MoETransformer  # noqa: E402
from sm_toolkit.models.moe_experts import FeedForward, GroupedExperts  # noqa: E402
from sm_toolkit.models.moe_layer import DispatchConfig, MoELayer  # noqa: E402
from sm_toolkit.models.moe_router import RouterConfig, TopKRouter  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Sizes:
    tokens: int = 8192
    d_model: int = 512
    d_ff: int = 1024
    lm_steps: int = 300
    lm: dict = dataclasses.field(
        default_factory=lambda: dict(
            block_size=256, n_layer=8, n_head=8, d_model=512, d_ff=1024, n_experts=8, dropless=True
        )  # fmt: skip
    )
    batch: int = 32
    gemm_n: int = 8192


TINY = Sizes(tokens=256, d_model=32, d_ff=64, lm_steps=5, batch=4, gemm_n=256,
             lm=dict(block_size=32, n_layer=2, n_head=2, d_model=32, d_ff=64, n_experts=4,
                     dropless=True))  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_nccl(device: torch.device, backend: str) -> dict:
    from sm_toolkit.runtime.distributed import DistInfo
    from sm_toolkit.train.config import TrainConfig
    from sm_toolkit.train.lm_tasks import BlockLMTask
    from sm_toolkit.train.parallel import ParallelDims
    from sm_toolkit.train.trainer import Trainer

    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        t = torch.ones(4, device=device)
        dist.all_reduce(t)
        cpu_refused = None
        if backend == "nccl":
            try:
                dist.all_reduce(torch.ones(1))
                cpu_refused = False
            except RuntimeError:
                cpu_refused = True
        info = DistInfo(rank=0, world_size=2)  # two ranks claimed: the trainer reduces
        ids = torch.randint(0, 50, (20_000,))
        model = MoETransformer(MoEConfig.debug(vocab_size=50, dropless=True))
        task = BlockLMTask(model=model, train_ids=ids, val_ids=ids[:2000], vocab_size=50,
                           block_size=32, batch_size=8, seed=0, dist=info)  # fmt: skip
        config = TrainConfig(epochs=1, batch_size=8, max_steps=5, log_every=2)
        trainer = Trainer(config, task, dist=info, device=device,
                          parallel=ParallelDims(world_size=1), emit=lambda _l: None)  # fmt: skip
        result = trainer.fit()
        return {"ok": result.state.step == 5, "backend": backend,
                "cpu_tensor_refused": cpu_refused, "steps": result.state.step}  # fmt: skip
    finally:
        dist.destroy_process_group()


def lm_step_fn(config: MoEConfig, batch: int, device: torch.device, bf16: bool):
    torch.manual_seed(0)
    model = MoETransformer(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    idx = torch.randint(0, config.vocab_size, (batch, config.block_size + 1), device=device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits, aux = model(idx[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
        (loss + aux.loss).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def check_bf16(device: torch.device, sizes: Sizes) -> dict:
    config = MoEConfig(vocab_size=96, **sizes.lm)
    fp32 = lm_step_fn(config, sizes.batch, device, bf16=False)().item()
    bf16 = lm_step_fn(config, sizes.batch, device, bf16=True)().item()
    return {"ok": abs(bf16 - fp32) < 0.05 * abs(fp32), "loss_fp32": fp32, "loss_bf16": bf16}


def check_compile(device: torch.device, sizes: Sizes) -> dict:
    torch.manual_seed(0)
    ffn = FeedForward(d_model=sizes.d_model, d_ff=sizes.d_ff, activation="gelu", out_std=0.02)
    ffn = ffn.to(device)
    x = torch.randn(sizes.tokens, sizes.d_model, device=device)
    eager = ffn(x)
    t0 = time.perf_counter()
    compiled = torch.compile(ffn)(x)
    layer = make_layer(8, sizes, "loop").to(device)
    y_eager = layer(x)[0]
    y_compiled = torch.compile(layer)(x)[0]  # graph breaks at the routing counts are fine
    seconds = time.perf_counter() - t0
    diff = max((compiled - eager).abs().max().item(), (y_compiled - y_eager).abs().max().item())
    return {"ok": diff < 1e-3, "max_abs_diff": diff, "compile_s": round(seconds, 1)}


def make_layer(n_experts: int, sizes: Sizes, compute: str) -> MoELayer:
    """Dropless top-2 MoE layer as in benchmarks/moe_layer.py, at these sizes."""
    router = TopKRouter(RouterConfig(d_model=sizes.d_model, n_experts=n_experts, top_k=2))
    experts = GroupedExperts(
        n_experts=n_experts, d_model=sizes.d_model, d_ff=sizes.d_ff, activation="gelu",
        out_std=0.02, compute=compute,
    )  # fmt: skip
    return MoELayer(router=router, experts=experts, dispatch=DispatchConfig(dropless=True),
                    aux_loss_weight=0.01, z_loss_weight=1e-3)  # fmt: skip


def check_layer(device: torch.device, sizes: Sizes) -> dict:
    torch.manual_seed(0)
    x = torch.randn(sizes.tokens, sizes.d_model, device=device, requires_grad=True)
    g = torch.randn_like(x)
    dense = FeedForward(d_model=sizes.d_model, d_ff=2 * sizes.d_ff, activation="gelu",
                        out_std=0.02).to(device)  # fmt: skip

    def run(module):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = module(x)
                y = out[0] if isinstance(out, tuple) else out
            (y.float() * g).sum().backward()
            module.zero_grad(set_to_none=True)

        return step

    base = timed(run(dense), device, 10)
    out = {"dense_ms": round(base * 1e3, 2)}
    for e in (8, 32):
        for compute in ("loop", "grouped", "auto"):
            layer = make_layer(e, sizes, compute).to(device)
            out[f"{compute}_e{e}"] = round(timed(run(layer), device, 10) / base, 3)
    return {"ok": True, **out}


def check_lm(device: torch.device, sizes: Sizes, budget_s: float) -> dict:
    config = MoEConfig(vocab_size=96, **sizes.lm)
    step = lm_step_fn(config, sizes.batch, device, bf16=True)
    n = sizes.gemm_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    peak = 2 * n**3 / timed(lambda: a @ a, device, 5)
    for _ in range(3):
        step()
    sync(device)
    t0, steps, loss = time.perf_counter(), 0, None
    while steps < sizes.lm_steps and time.perf_counter() - t0 < budget_s:
        loss = step()
        steps += 1
    sync(device)
    step_s = (time.perf_counter() - t0) / max(1, steps)
    tokens = sizes.batch * config.block_size
    achieved = model_flops_per_token(config) * tokens / step_s
    return {
        "ok": loss is not None and bool(torch.isfinite(loss)), "steps": steps,
        "step_ms": round(step_s * 1e3, 2), "tokens_per_s": round(tokens / step_s),
        "model_tflops": round(achieved / 1e12, 3), "bf16_gemm_tflops": round(peak / 1e12, 1),
        "mfu_vs_measured_gemm": round(achieved / peak, 3), "final_loss": float(loss),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on CPU, gloo")
    parser.add_argument("--lm-budget-s", type=float, default=180.0)
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        message = "no CUDA GPU here: nothing checked (use a GPU machine, or --cpu-dry-run)"
        print(json.dumps({"gpu": False, "message": message}))
        return 0
    device = torch.device("cpu") if args.cpu_dry_run else torch.device("cuda", 0)
    sizes = TINY if args.cpu_dry_run else Sizes()
    backend = "gloo" if args.cpu_dry_run else "nccl"
    report: dict = {"gpu": device.type == "cuda", "torch": torch.__version__}
    if device.type == "cuda":
        report["device"] = torch.cuda.get_device_name(device)
    sections = {
        "nccl": lambda: check_nccl(device, backend),
        "bf16": lambda: check_bf16(device, sizes),
        "compile": lambda: check_compile(device, sizes),
        "layer": lambda: check_layer(device, sizes),
        "lm": lambda: check_lm(device, sizes, args.lm_budget_s),
    }
    t_start = time.perf_counter()
    for name, run in sections.items():
        t0 = time.perf_counter()
        try:
            report[name] = run()
        except Exception as err:  # noqa: BLE001 - one section failing must not hide the rest
            report[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:400],
                            "where": traceback.format_exc(limit=2)[-400:]}  # fmt: skip
        report[name]["seconds"] = round(time.perf_counter() - t0, 1)
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    report["all_ok"] = all(report[name].get("ok") for name in sections)
    print(json.dumps(report))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
