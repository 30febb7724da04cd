"""A user's own training script, as SageMaker runs it: logistic regression in PyTorch.

SageMaker (and sm-toolkit's local runs) pass each hyperparameter as ``--name value``,
mount the ``train`` channel at SM_CHANNEL_TRAIN and upload what is saved in SM_MODEL_DIR.
Each epoch prints one line that the spec's metric regexes read, e.g.
``epoch=3 loss=0.4123 val_loss=0.4410 val_acc=0.8750``.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import torch


def load(channel: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = []
    for path in sorted(channel.glob("*.csv")):
        with path.open() as f:
            rows += [[float(v) for v in row] for row in csv.reader(f) if row]
    data = torch.tensor(rows)
    return data[:, :-1], data[:, -1:]  # features (N, F), labels (N, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args, _ = p.parse_known_args()  # SageMaker may add arguments of its own
    torch.manual_seed(args.seed)
    x, y = load(Path(os.environ.get("SM_CHANNEL_TRAIN", "data")))
    n_val = len(x) // 5
    x_val, y_val, x_train, y_train = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(1, args.epochs + 1):
        opt.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        opt.step()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            val_acc = ((logits > 0).float() == y_val).float().mean().item()
        print(f"epoch={epoch} loss={loss.item():.4f} val_loss={val_loss:.4f} val_acc={val_acc:.4f}")
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "model"))
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), model_dir / "model.pt")


if __name__ == "__main__":
    main()
