"""Sigmoid and tanh against ReLU and GELU in a deep plain CNN (no batch norm, no skips).

Trains the same 10-conv-layer network on the digits with each activation (same seed, data
order and optimizer), then prints final test accuracy and how much gradient reaches the
first layer compared with the last, and saves the gradient-flow figure.

    python benchmarks/activations_cnn.py                 # ~1-2 minutes on 2 CPU cores
    python benchmarks/activations_cnn.py --epochs 3 --depth 6 --out /tmp/act
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sm_toolkit.models.cnn import CNN, CNNConfig
from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.train import datasets, plots
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.task import ClassificationTask
from sm_toolkit.train.trainer import Trainer

ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")


def standard_init(model: torch.nn.Module, activation: str) -> None:
    """Each activation with the init recommended for it: Glorot (Xavier) with the matching
    gain for sigmoid/tanh, He (Kaiming, fan-in) for ReLU/GELU. Torch's default init shrinks
    the signal in every layer, which would make all four vanish in a 10-layer plain net."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            if activation in ("relu", "gelu"):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                gain = torch.nn.init.calculate_gain(activation)
                torch.nn.init.xavier_uniform_(m.weight, gain=gain)
            torch.nn.init.zeros_(m.bias)


def run_one(activation: str, args: argparse.Namespace, splits) -> dict:
    torch.manual_seed(args.seed)
    config = CNNConfig(
        width=args.width, depth=args.depth, batch_norm=False, residual=False, dense=64,
        dropout=0.0, activation=activation,
    )  # fmt: skip
    model = CNN(config)
    if args.init == "standard":
        standard_init(model, activation)
    task = ClassificationTask(
        family="cnn", model=model, splits=splits, num_classes=10,
        batch_size=args.batch_size, seed=args.seed, dist=DistInfo(),
    )  # fmt: skip
    train = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        momentum=0.9, warmup_steps=10, log_every=5, seed=args.seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer = Trainer(train, task, emit=lambda _line: None)
    result = trainer.fit()
    test = task.evaluate(task.model, "test")
    flow = {k: float(np.mean(v)) for k, v in trainer.grads.mean_abs.items()}
    return {
        "activation": activation,
        "test_accuracy": test["accuracy"],
        "final_train_loss": result.state.epochs[-1]["train:loss"],
        "flow": flow,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--depth", type=int, default=10, help="conv layers")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init",
        default="standard",
        choices=("standard", "torch"),
        help="standard: Xavier for sigmoid/tanh, He for ReLU/GELU; torch: default",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/activations_cnn"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = datasets.builtin_digits()
    splits = datasets.digits_splits(images, labels)
    rows = [run_one(a, args, splits) for a in ACTIVATIONS]
    layers = list(rows[0]["flow"])
    conv = [n for n in layers if n.startswith("blocks.")]
    print(
        f"deep plain CNN: {args.depth} conv layers x {args.width} channels, no batch norm, "
        f"no skips; {args.init} init; {args.optimizer} lr {args.lr}, {args.epochs} epochs"
    )
    print(f"{'activation':<10} {'test acc':>8} {'train loss':>10} {'|grad| conv1':>12} "
          f"{'|grad| conv' + str(args.depth):>13} {'first/last':>10} {'time s':>7}")  # fmt: skip
    for r in rows:
        first, last = r["flow"][conv[0]], r["flow"][conv[-1]]
        print(
            f"{r['activation']:<10} {r['test_accuracy']:>8.4f} {r['final_train_loss']:>10.4f} "
            f"{first:>12.2e} {last:>13.2e} {first / last:>10.2e} {r['seconds']:>7.1f}"
        )
    figure = plots.gradient_flow_compare(
        {r["activation"]: [r["flow"][n] for n in layers] for r in rows}, layers,
        args.out / "gradient_flow_by_activation.png",
    )  # fmt: skip
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
