"""Expert parallelism: each process holds E / world experts; rows travel by all-to-all.

Legend for tensor names (suffix = shape):
    S rows this rank sends, sorted by global expert (as `MoELayer` produces them)
    R rows this rank receives, ordered by (source rank, local expert)
    D model width, E global experts, W world size, L = E / W local experts

Flow of one `ExpertParallelExperts.forward(x_SD, counts)`:
 1. exchange per-expert row counts (int64 `all_to_all_single`, equal splits of L each), so
    every rank knows how many rows it will receive from each peer for each local expert;
 2. send the rows with `all_to_all_single` and uneven split sizes (works with gloo on CPU);
 3. regroup received rows expert-major, run the local experts on ragged segments, undo;
 4. send results back with the reverse all-to-all.
Both all-to-alls are wrapped in an autograd Function whose backward is the reverse
all-to-all, so gradients reach the sender's router and inputs. A rank whose experts get no
rows still joins every collective (zero-size splits), so nothing hangs.

Routing, capacity and the balance loss are computed on each rank's own tokens, exactly as
the single-process layer would on that rank's batch: outputs and input/router gradients
match it, and each local expert's gradient equals the sum over ranks of the single-process
gradients. Expert parameters are not replicated: keep them out of data-parallel
all-reduce (`MoETransformer.expert_parameters()`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe_experts import GroupedExperts
from sm_toolkit.models.moe_layer import MoELayer


class _AllToAll(torch.autograd.Function):
    """Differentiable uneven all_to_all_single over rows; backward swaps the split sizes."""

    @staticmethod
    def forward(ctx, x_SD, out_splits: list[int], in_splits: list[int], group):  # type: ignore[override]
        ctx.splits, ctx.group = (out_splits, in_splits), group
        out_RD = x_SD.new_empty((sum(out_splits), *x_SD.shape[1:]))
        dist.all_to_all_single(out_RD, x_SD.contiguous(), out_splits, in_splits, group=group)
        return out_RD

    @staticmethod
    def backward(ctx, grad_RD):  # type: ignore[override]
        out_splits, in_splits = ctx.splits
        grad_SD = grad_RD.new_empty((sum(in_splits), *grad_RD.shape[1:]))
        dist.all_to_all_single(
            grad_SD, grad_RD.contiguous(), in_splits, out_splits, group=ctx.group
        )
        return grad_SD, None, None, None


def all_to_all_rows(
    x_SD: torch.Tensor, out_splits: list[int], in_splits: list[int], group=None
) -> torch.Tensor:
    """Send rows in_splits[r] to rank r, receive out_splits[r] rows from rank r."""
    return _AllToAll.apply(x_SD, out_splits, in_splits, group)


class ExpertParallelExperts(nn.Module):
    """Drop-in for `GroupedExperts` in `MoELayer`: same call, experts spread over ranks."""

    def __init__(self, local: GroupedExperts, n_experts: int, group=None) -> None:
        super().__init__()
        self.local = local
        self.n_experts = n_experts
        self.group = group
        self.world = dist.get_world_size(group)
        if n_experts % self.world or local.n_experts * self.world != n_experts:
            raise ConfigError("n_experts", n_experts, f"a multiple of world size {self.world}")

    def forward(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor:
        n_local = self.local.n_experts
        send_E = torch.tensor(counts, dtype=torch.long, device=x_SD.device)
        recv_E = torch.empty_like(send_E)  # chunk r: rows rank r sends to each of my experts
        dist.all_to_all_single(recv_E, send_E, group=self.group)
        send_splits = send_E.view(self.world, n_local).sum(1).tolist()
        recv_WL = recv_E.view(self.world, n_local)
        recv_splits = recv_WL.sum(1).tolist()
        x_RD = all_to_all_rows(x_SD, recv_splits, send_splits, self.group)
        order_R = expert_major_order(recv_WL)
        y_RD_sorted = self.local(x_RD.index_select(0, order_R), recv_WL.sum(0).tolist())
        inverse_R = torch.empty_like(order_R)
        inverse_R[order_R] = torch.arange(order_R.numel(), device=order_R.device)
        y_RD = y_RD_sorted.index_select(0, inverse_R)
        return all_to_all_rows(y_RD, send_splits, recv_splits, self.group)


def expert_major_order(counts_WL: torch.Tensor) -> torch.Tensor:
    """Row order that turns (source rank, expert)-ordered rows into (expert, source rank)."""
    world, n_local = counts_WL.shape
    chunk_R = torch.repeat_interleave(
        torch.arange(world * n_local, device=counts_WL.device), counts_WL.reshape(-1)
    )
    return torch.argsort(chunk_R % n_local, stable=True)  # stable: keeps source-rank order


def shard_experts(model: nn.Module, group=None) -> nn.Module:
    """Keep only this rank's slice of every MoE layer's experts and wire in all-to-all.

    Call after building the same (same-seed) model on every rank; rank r keeps experts
    r*L .. (r+1)*L - 1 of each layer. Returns the model, changed in place.
    """
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    for layer in [m for m in model.modules() if isinstance(m, MoELayer)]:
        if layer.dispatch.compute == "padded":
            raise ConfigError("capacity_compute", "padded", "'ragged' with expert parallelism")
        full = layer.experts
        if not isinstance(full, GroupedExperts) or full.n_experts % world:
            raise ConfigError("n_experts", layer.n_experts, f"a multiple of world size {world}")
        n_local = full.n_experts // world
        local = full.slice(rank * n_local, (rank + 1) * n_local)
        layer.experts = ExpertParallelExperts(local, full.n_experts, group)
    return model
