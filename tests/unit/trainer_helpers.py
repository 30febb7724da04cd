"""Tiny tasks for trainer tests (debug sizes, a few hundred samples)."""

from __future__ import annotations

import torch

from sm_toolkit.models.cnn import CNN, CNNConfig
from sm_toolkit.models.rnn import RNNConfig, build_rnn
from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.train import datasets
from sm_toolkit.train.lm_tasks import TBPTTTask
from sm_toolkit.train.task import ClassificationTask

# Tiny models: one thread is as fast, and avoids thrashing the shared CPUs.
torch.set_num_threads(1)


def digits_task(
    seed: int = 0, dist: DistInfo | None = None, batch_size: int = 32, init_seed=None, **cnn
):
    """`seed` fixes the data order (and the init unless `init_seed` is given)."""
    torch.manual_seed(seed if init_seed is None else init_seed)
    images, labels = datasets.builtin_digits()
    splits = datasets.digits_splits(images, labels, limit=300)
    return ClassificationTask(
        family="cnn", model=CNN(CNNConfig.debug(**cnn)), splits=splits, num_classes=10,
        batch_size=batch_size, seed=seed, dist=dist or DistInfo(),
    )  # fmt: skip


def lm_task(seed: int = 0, cell: str = "lstm"):
    torch.manual_seed(seed)
    vocab, train_ids, val_ids = datasets.text_splits(datasets.builtin_text(), limit=6000)
    model = build_rnn(RNNConfig.debug(cell=cell, vocab_size=len(vocab), dropout=0.2, layers=2))
    return TBPTTTask(
        model=model, train_ids=train_ids, val_ids=val_ids, vocab_size=len(vocab),
        batch_size=8, bptt=16, dist=DistInfo(),
    )  # fmt: skip
