"""Language-model tasks on a character stream.

TBPTTTask (RNN family): the training text is cut into B parallel streams; each step takes
the next window of k characters from every stream and carries the hidden state over from
the previous window, detached, so gradients flow back at most k steps (truncated BPTT).
BlockLMTask (MoE transformer): independent blocks of block_size characters, shuffled.

Legend: B batch (streams), T time, V vocabulary, N tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sm_toolkit.runtime.distributed import DistInfo
from sm_toolkit.train import metrics as M
from sm_toolkit.train.task import chunk, per_rank_batch, shard_indices


def batchify(ids_N: torch.Tensor, streams: int) -> torch.Tensor:
    """(N,) -> (streams, N // streams): row b is the b-th contiguous slice of the text."""
    length = len(ids_N) // streams
    return ids_N[: streams * length].view(streams, length)


def detach_hidden(hidden: Any) -> Any:
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()


class TBPTTTask:
    """Character LM with truncated back-propagation through time."""

    family = "rnn"

    def __init__(
        self,
        *,
        model: nn.Module,
        train_ids: torch.Tensor,
        val_ids: torch.Tensor,
        vocab_size: int,
        batch_size: int,
        bptt: int,
        dist: DistInfo,
    ) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.bptt = bptt
        local = per_rank_batch(batch_size, dist)
        # Each rank owns a contiguous block of streams; together they form the global batch.
        self.data_BL = batchify(train_ids, batch_size)[dist.rank * local : (dist.rank + 1) * local]
        self.val_ids = val_ids
        self.train_ids = train_ids
        self.hidden: Any = None

    def _windows(self, data_BL: torch.Tensor) -> list[tuple[int, int]]:
        length = data_BL.shape[1]
        return [(t, min(self.bptt, length - 1 - t)) for t in range(0, length - 1, self.bptt)]

    def batches(self, epoch: int) -> list[tuple[int, int]]:
        return self._windows(self.data_BL)

    def start_epoch(self, epoch: int) -> None:
        self.hidden = None  # each epoch starts the streams from their beginning

    def loss(self, model: nn.Module, batch: tuple[int, int]) -> tuple[torch.Tensor, dict]:
        t, k = batch
        device = next(self.model.parameters()).device
        x_BT = self.data_BL[:, t : t + k].to(device)
        y_BT = self.data_BL[:, t + 1 : t + 1 + k].to(device)
        logits_BTV, hidden = model(x_BT, self.hidden)
        self.hidden = detach_hidden(hidden)
        return F.cross_entropy(logits_BTV.float().flatten(0, 1), y_BT.flatten()), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        data_BL = batchify(self.val_ids, 8)
        device = next(self.model.parameters()).device
        hidden, total, count = None, 0.0, 0
        for t, k in self._windows(data_BL):
            logits_BTV, hidden = model(data_BL[:, t : t + k].to(device), hidden)
            y = data_BL[:, t + 1 : t + 1 + k].to(device).flatten()
            total += F.cross_entropy(logits_BTV.float().flatten(0, 1), y, reduction="sum").item()
            count += y.numel()
        model.train()
        loss = total / max(1, count)
        return {"loss": loss, "perplexity": M.perplexity(loss), "bpc": loss / np.log(2)}

    def baseline(self) -> dict[str, float]:
        return M.unigram_baseline(self.train_ids.numpy(), self.val_ids.numpy(), self.vocab_size)

    def final_report(self, model: nn.Module, plot_dir: Path | None) -> dict[str, Any]:
        base = self.baseline()
        return {"unigram_baseline": base, "metrics": {}}

    def state_dict(self) -> dict[str, Any]:
        if self.hidden is None:
            return {"hidden": []}
        parts = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        return {"hidden": [p.cpu() for p in parts], "is_tuple": isinstance(self.hidden, tuple)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("hidden", [])
        device = next(self.model.parameters()).device
        if not parts:
            self.hidden = None
        elif state.get("is_tuple"):
            self.hidden = tuple(p.to(device) for p in parts)
        else:
            self.hidden = parts[0].to(device)


class BlockLMTask:
    """Next-character prediction on shuffled blocks, for models returning (logits, aux)."""

    family = "moe"

    def __init__(
        self,
        *,
        model: nn.Module,
        train_ids: torch.Tensor,
        val_ids: torch.Tensor,
        vocab_size: int,
        block_size: int,
        batch_size: int,
        seed: int,
        dist: DistInfo,
    ) -> None:
        self.model = model
        self.train_ids, self.val_ids = train_ids, val_ids
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.seed = seed
        self.dist = dist
        self.local_batch = per_rank_batch(batch_size, dist)
        self.n_blocks = (len(train_ids) - 1) // block_size
        self.last_eval_layers: list[dict] = []

    def _block(self, ids: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.arange(self.block_size)
        pos_BT = starts[:, None] * self.block_size + offsets
        return ids[pos_BT], ids[pos_BT + 1]

    def batches(self, epoch: int) -> list[torch.Tensor]:
        order = shard_indices(self.n_blocks, dist=self.dist, seed=self.seed, epoch=epoch)
        return chunk(order, self.local_batch)

    def start_epoch(self, epoch: int) -> None:
        pass

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        device = next(self.model.parameters()).device
        x_BT, y_BT = (t.to(device) for t in self._block(self.train_ids, batch))
        logits_BTV, aux = model(x_BT)
        ce = F.cross_entropy(logits_BTV.float().flatten(0, 1), y_BT.flatten())
        extras = {  # tensors: the trainer reduces them on the device at logging steps
            "ce_loss": ce.detach(),
            "aux_loss": aux.loss.detach(),
            "drop_rate": _mean_drop_rate(aux.layers, ce),
        }
        return ce + aux.loss, extras

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()
        device = next(self.model.parameters()).device
        n_val = (len(self.val_ids) - 1) // self.block_size
        total, count, drops, balances = 0.0, 0, [], []
        tokens: list[np.ndarray] = []
        for starts in torch.arange(n_val).split(32):
            x_BT, y_BT = (t.to(device) for t in self._block(self.val_ids, starts))
            logits_BTV, aux = model(x_BT)
            total += F.cross_entropy(
                logits_BTV.float().flatten(0, 1), y_BT.flatten(), reduction="sum"
            ).item()
            count += y_BT.numel()
            drops += [s["drop_rate"] for s in aux.layers]
            balances += [s["balance"] for s in aux.layers]
            counts = [np.asarray(s["tokens_per_expert"], dtype=np.float64) for s in aux.layers]
            tokens = counts if not tokens else [a + b for a, b in zip(tokens, counts, strict=True)]
        model.train()
        self.last_eval_layers = [t.tolist() for t in tokens]
        loss = total / max(1, count)
        out = {"loss": loss, "perplexity": M.perplexity(loss)}
        if drops:
            out.update(drop_rate=float(np.mean(drops)), balance=float(np.mean(balances)))
            util = [t / max(1.0, t.sum()) for t in tokens]
            out["max_expert_share"] = float(max(u.max() for u in util))
        return out

    def final_report(self, model: nn.Module, plot_dir: Path | None) -> dict[str, Any]:
        from sm_toolkit.train import plots

        base = M.unigram_baseline(self.train_ids.numpy(), self.val_ids.numpy(), self.vocab_size)
        if plot_dir is not None and self.last_eval_layers:
            plots.expert_utilisation_plot(
                self.last_eval_layers, plot_dir / "expert_utilisation.png"
            )
        return {
            "unigram_baseline": base,
            "val_tokens_per_expert": self.last_eval_layers,
            "metrics": {},
        }

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _mean_drop_rate(layers: list, like: torch.Tensor) -> torch.Tensor:
    """The MoE layers' mean drop rate as a device tensor: read back only at logging steps."""
    rates = [s.drop_rate_tensor for s in layers if hasattr(s, "drop_rate_tensor")]
    if not rates:
        return torch.zeros((), device=like.device)
    return torch.stack(rates).mean()
