"""MoE trade-offs on a character LM (CPython's pydoc_data.topics text), fixed steps per variant.

(a) MoE vs dense FFN at the same active parameters per token (dense d_ff = top_k * d_ff)
(b) capacity factor 1.0 / 1.25 / 2.0 / dropless: training drop rate and validation loss
(c) fine-grained vs coarse experts at equal total and active parameters
    (16 experts of width H, top-2, against 64 experts of width H/4, top-8)
(d) activation checkpointing: peak memory of one training step against step time

Every variant trains once per seed (seed s fixes the initial weights and the batch order, the
same for every variant) with AdamW for the same number of steps; validation loss is the mean
over fixed held-out batches (last 10 % of the text), in eval mode (eval capacity factor 2.0).
Peak memory is measured with `torch.distributed._tools.mem_tracker.MemTracker` (every tensor
storage allocated during the step), as the peak minus the bytes live at the start of it.

    .venv/bin/python benchmarks/moe_tradeoffs.py             # a few minutes on 2 cores
    .venv/bin/python benchmarks/moe_tradeoffs.py --steps 60  # smoke run

Prints markdown tables and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pydoc_data.topics import topics

import torch
import torch.nn.functional as F
from torch.distributed._tools.mem_tracker import MemTracker

from sm_toolkit.models.moe import MoEConfig, MoETransformer

BLOCK, BATCH, D_MODEL, D_FF = 64, 16, 64, 128


def load_corpus() -> tuple[torch.Tensor, torch.Tensor, int]:
    text = "\n".join(topics[k] for k in sorted(topics))
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    split = int(0.9 * len(ids))
    return ids[:split], ids[split:], len(chars)


def get_batch(data: torch.Tensor, gen: torch.Generator, batch: int = BATCH):
    start = torch.randint(0, len(data) - BLOCK - 1, (batch,), generator=gen)
    x = torch.stack([data[s : s + BLOCK] for s in start.tolist()])
    y = torch.stack([data[s + 1 : s + BLOCK + 1] for s in start.tolist()])
    return x, y


def base_config(vocab: int) -> MoEConfig:
    return MoEConfig(
        vocab_size=vocab, block_size=BLOCK, n_layer=2, n_head=4, d_model=D_MODEL, d_ff=D_FF,
        n_experts=8, top_k=2, moe_every=1, dropless=True, aux_loss_weight=0.01,
        z_loss_weight=1e-3,
    )  # fmt: skip


def active_params(model: MoETransformer) -> int:
    """Parameters one token uses: all dense ones plus k/E of each MoE layer's experts."""
    count = sum(p.numel() for p in model.dense_parameters())
    for layer in model.moe_layers():
        experts = sum(p.numel() for p in layer.experts.parameters())
        count += experts * layer.router.config.top_k // layer.n_experts
    return count


def train_seeds(config: MoEConfig, data, steps: int, seeds: int) -> dict:
    """Train once per seed; report the mean of each figure and the per-seed validation losses."""
    runs = [train(config, data, steps, seed) for seed in range(seeds)]
    row = {k: runs[0][k] for k in ("total_params", "active_params")}
    for key in ("val_loss", "train_loss", "drop_rate", "balance", "ms_per_step"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = round(statistics.mean(values), 4) if values else None
    row["val_loss_per_seed"] = [r["val_loss"] for r in runs]
    return row


def train(config: MoEConfig, data, steps: int, seed: int = 0, lr: float = 3e-3) -> dict:
    train_ids, val_ids = data
    torch.manual_seed(seed)
    model = MoETransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1000 + seed)
    drops, t0 = [], time.perf_counter()
    for _ in range(steps):
        x, y = get_batch(train_ids, gen)
        logits, aux = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        (loss + aux.loss).backward()
        optimizer.step()
        if aux.layers:
            drops.append(statistics.mean(s["drop_rate"] for s in aux.layers))
    seconds = time.perf_counter() - t0
    last = drops[-max(1, steps // 5) :]
    balance = statistics.mean(s["balance"] for s in aux.layers) if aux.layers else None
    return {
        "val_loss": round(evaluate(model, val_ids), 4),
        "train_loss": round(loss.item(), 4),
        "drop_rate": round(statistics.mean(last), 4) if drops else 0.0,
        "balance": round(balance, 3) if balance else None,
        "total_params": sum(p.numel() for p in model.parameters()),
        "active_params": active_params(model),
        "ms_per_step": round(1e3 * seconds / steps, 1),
    }


@torch.no_grad()
def evaluate(model: MoETransformer, val_ids: torch.Tensor, batches: int = 20) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(123)
    losses = []
    for _ in range(batches):
        x, y = get_batch(val_ids, gen)
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item())
    model.train()
    return statistics.mean(losses)


def checkpointing_cost(config: MoEConfig, data, repeats: int = 6) -> dict:
    """Peak extra memory and median step time, with and without recomputation."""
    gen = torch.Generator().manual_seed(2)
    x, y = get_batch(data[0], gen, batch=4 * BATCH)
    models = {}
    for ac in (False, True):
        torch.manual_seed(0)
        models[ac] = MoETransformer(replace(config, activation_checkpointing=ac))

    def step(model: MoETransformer) -> None:
        logits, aux = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        (loss + aux.loss).backward()
        model.zero_grad(set_to_none=True)

    times: dict[bool, list[float]] = {False: [], True: []}
    for ac in (False, True):
        step(models[ac])  # warm-up
    for _ in range(repeats):
        for ac in (False, True):
            t0 = time.perf_counter()
            step(models[ac])
            times[ac].append(time.perf_counter() - t0)
    result = {}
    for ac, model in models.items():
        tracker = MemTracker()
        tracker.track_external(model, x, y)
        with tracker:
            start = tracker.get_tracker_snapshot("current")
            step(model)
        peak = tracker.get_tracker_snapshot("peak")[x.device]["Total"]
        extra = peak - start.get(x.device, {}).get("Total", 0)
        result["on" if ac else "off"] = {
            "peak_extra_mib": round(extra / 2**20, 1),
            "ms_per_step": round(1e3 * statistics.median(times[ac]), 1),
        }
    return result


def table(title: str, rows: dict[str, dict], keys: list[str]) -> None:
    print(f"\n### {title}\n")
    print("| variant | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row.get(k)) for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2, help="runs per variant (init + data)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads; 1 by default: at these sizes a second thread only adds "
        "synchronisation, which costs up to 10x on a shared, loaded machine",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_ids, val_ids, vocab = load_corpus()
    data = (train_ids, val_ids)
    base = base_config(vocab)
    keys = ["val_loss", "val_loss_per_seed", "train_loss", "drop_rate", "balance", "total_params",
            "active_params", "ms_per_step"]  # fmt: skip

    def run(cfg: MoEConfig) -> dict:
        return train_seeds(cfg, data, args.steps, args.seeds)

    a = {
        "dense FFN (d_ff = 2 x 128)": run(replace(base, moe_every=0, d_ff=2 * D_FF)),
        "MoE 8 experts top-2 (d_ff 128)": run(base),
    }  # fmt: skip
    table(f"(a) MoE vs dense, same active parameters, {args.steps} steps x {args.seeds} seeds",
          a, keys)  # fmt: skip

    b = {}
    for cf in (1.0, 1.25, 2.0):
        cfg = replace(base, dropless=False, capacity_factor=cf)
        b[f"capacity factor {cf}"] = run(cfg)
    b["dropless"] = a["MoE 8 experts top-2 (d_ff 128)"]
    table("(b) capacity factor (8 experts, top-2; drop rate = mean of the last 20 % of steps)",
          b, keys)  # fmt: skip

    c = {
        "coarse: 16 experts x 128, top-2": run(replace(base, n_experts=16)),
        "fine: 64 experts x 32, top-8": run(replace(base, n_experts=64, d_ff=D_FF // 4, top_k=8)),
    }
    table("(c) fine-grained vs coarse experts, equal total and active parameters", c, keys)

    d = checkpointing_cost(base, data)
    table(f"(d) activation checkpointing, batch {4 * BATCH} x {BLOCK}, fwd+bwd", d,
          ["peak_extra_mib", "ms_per_step"])  # fmt: skip
    print(json.dumps({"steps": args.steps, "seeds": args.seeds, "a": a, "b": b, "c": c, "d": d}))


if __name__ == "__main__":
    main()
