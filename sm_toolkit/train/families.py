"""Per-family wiring: hyperparameters -> model config -> model -> task.

Each `build_*` returns a `Built`: the task for the trainer plus what is needed to save the
model so it can be rebuilt (family, model config as a dict, extras such as the vocabulary).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.runtime.env import RuntimeEnv
from sm_toolkit.train import datasets
from sm_toolkit.train.task import ClassificationTask, Task

DEBUG_DIGITS = 400  # samples kept with --size debug
DEBUG_CHARS = 40_000  # corpus characters kept with --size debug


@dataclass
class Built:
    task: Task
    family: str
    model_config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # printed once before training


def _digits(ns: argparse.Namespace, env: RuntimeEnv):
    images, labels = datasets.load_digits_arrays(env.channel("train"))
    return datasets.digits_splits(images, labels, limit=DEBUG_DIGITS if ns.size == "debug" else 0)


def build_cnn(ns: argparse.Namespace, env: RuntimeEnv, dist: DistInfo) -> Built:
    from sm_toolkit.models.cnn import CNN, CNNConfig

    options = dict(
        width=ns.width, depth=ns.depth, kernel_size=ns.kernel_size, batch_norm=ns.batch_norm,
        residual=ns.residual, dense=ns.dense, dropout=ns.dropout, activation=ns.activation,
        activation_params=ns.activation_params,
        activation_checkpointing=ns.activation_checkpointing,
    )  # fmt: skip
    if ns.size == "debug":
        config = CNNConfig.debug(
            **{k: v for k, v in options.items() if k not in ("width", "dense")}
        )
    else:
        config = CNNConfig(**options)
    task = ClassificationTask(
        family="cnn", model=CNN(config), splits=_digits(ns, env), num_classes=10,
        batch_size=ns.batch_size, seed=ns.seed, dist=dist,
    )  # fmt: skip
    return Built(task, "cnn", config.to_dict())


def build_rnn(ns: argparse.Namespace, env: RuntimeEnv, dist: DistInfo) -> Built:
    from sm_toolkit.models.rnn import RNNConfig, build_rnn
    from sm_toolkit.train.lm_tasks import TBPTTTask

    options = dict(
        cell=ns.cell, task=ns.task, embed=ns.embed, hidden=ns.hidden, layers=ns.layers,
        bidirectional=ns.bidirectional, dropout=ns.dropout, nonlinearity=ns.nonlinearity,
        activation_checkpointing=ns.activation_checkpointing,
    )  # fmt: skip
    make = RNNConfig.debug if ns.size == "debug" else RNNConfig
    if ns.size == "debug":
        options = {k: v for k, v in options.items() if k not in ("embed", "hidden", "layers")}
    if ns.task == "classify":
        config = make(**options)
        task = ClassificationTask(
            family="rnn", model=build_rnn(config), splits=_digits(ns, env), num_classes=10,
            batch_size=ns.batch_size, seed=ns.seed, dist=dist,
        )  # fmt: skip
        return Built(task, "rnn", config.to_dict())
    limit = DEBUG_CHARS if ns.size == "debug" else ns.corpus_chars
    vocab, train_ids, val_ids = datasets.text_splits(
        datasets.load_text(env.channel("train")), limit=limit
    )
    config = make(vocab_size=len(vocab), **options)
    task = TBPTTTask(
        model=build_rnn(config), train_ids=train_ids, val_ids=val_ids, vocab_size=len(vocab),
        batch_size=ns.batch_size, bptt=ns.bptt, dist=dist,
    )  # fmt: skip
    note = _baseline_note(train_ids, val_ids, len(vocab))
    return Built(task, "rnn", config.to_dict(), {"vocab": vocab.chars}, note)


def _baseline_note(train_ids: Any, val_ids: Any, vocab_size: int) -> list[str]:
    from sm_toolkit.train.metrics import unigram_baseline

    base = unigram_baseline(train_ids.numpy(), val_ids.numpy(), vocab_size)
    # No `name=value` tokens here: metric regexes must only match [metrics] lines.
    return [
        f"[baseline] unigram model on the validation split: loss {base['loss']:.4f} nats/char, "
        f"perplexity {base['perplexity']:.2f}"
    ]


MOE_FIELDS = (
    "block_size", "n_layer", "n_head", "d_model", "d_ff", "n_experts", "top_k", "moe_every",
    "capacity_factor", "eval_capacity_factor", "dropless", "aux_loss_weight", "z_loss_weight",
    "activation", "dropout", "activation_checkpointing", "expert_kind", "expert_compute",
)  # fmt: skip


def build_moe(ns: argparse.Namespace, env: RuntimeEnv, dist: DistInfo) -> Built:
    from sm_toolkit.models.moe import MoEConfig, MoETransformer
    from sm_toolkit.train.lm_tasks import BlockLMTask

    limit = DEBUG_CHARS if ns.size == "debug" else ns.corpus_chars
    vocab, train_ids, val_ids = datasets.text_splits(
        datasets.load_text(env.channel("train")), limit=limit
    )
    given = {k: getattr(ns, k) for k in MOE_FIELDS if getattr(ns, k, None) is not None}
    if ns.size == "debug":
        config = dataclasses.replace(MoEConfig.debug(len(vocab)), **given)
    else:
        config = MoEConfig(vocab_size=len(vocab), **given)
    task = BlockLMTask(
        model=MoETransformer(config), train_ids=train_ids, val_ids=val_ids,
        vocab_size=len(vocab), block_size=config.block_size, batch_size=ns.batch_size,
        seed=ns.seed, dist=dist,
    )  # fmt: skip
    note = _baseline_note(train_ids, val_ids, len(vocab))
    return Built(task, "moe", dataclasses.asdict(config), {"vocab": vocab.chars}, note)


def rebuild_model(model_dir: Path) -> nn.Module:
    """The trained model from SM_MODEL_DIR (model_config.json + model.pt), in eval mode."""
    meta = json.loads((Path(model_dir) / "model_config.json").read_text())
    config = meta["model_config"]
    if meta["family"] == "cnn":
        from sm_toolkit.models.cnn import CNN, CNNConfig

        model: nn.Module = CNN(CNNConfig(**config))
    elif meta["family"] == "rnn":
        from sm_toolkit.models.rnn import RNNConfig, build_rnn

        model = build_rnn(RNNConfig(**config))
    else:
        from sm_toolkit.models.moe import MoEConfig, MoETransformer

        model = MoETransformer(MoEConfig(**config))
    state = torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
