"""One Mixture-of-Experts feed-forward layer: route, dispatch by sorting, run experts, combine.

Legend for tensor names (suffix = shape):
    B batch, T tokens per sequence (flattened to N = B * T tokens in the layer)
    N tokens in this call, D model width, E experts, K experts per token
    A = N * K assignments, flattened k-major (index a = k * N + n)
    S kept assignments, sorted by expert
    C capacity (rows per expert)

Dispatch is sort-based, never the GShard one-hot einsum (whose [N, E, C] tensors grow with
N^2): a stable argsort of the assignments by expert gives each expert a contiguous segment;
rows are gathered with `index_select`, the experts run on the ragged segments (or on a
capacity-padded [E, C, D] buffer with `bmm`), and outputs are summed back per token with
`index_add`, weighted by the gate.

Token dropping: with capacity C = min(N, ceil(capacity_factor * K * N / E)), an expert keeps
its first C assignments in k-major order, i.e. every token's first choice takes priority
over any second choice (GShard), then earlier tokens first. A dropped assignment contributes
zero; the token still passes through the residual connection around the layer. `dropless`
keeps every assignment. The capacity only decides *which* rows are kept: the default
`ragged` compute runs just the kept rows; `padded` runs fixed [E, C, D] shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe_experts import FeedForward, GroupedExperts
from sm_toolkit.models.moe_router import TopKRouter, count_per_expert


@dataclass(frozen=True, kw_only=True)
class DispatchConfig:
    """How tokens reach the experts. Validated at construction."""

    capacity_factor: float = 1.25  # training
    eval_capacity_factor: float = 2.0  # model.eval()
    dropless: bool = False  # True: no capacity, nothing is dropped
    compute: Literal["ragged", "padded"] = "ragged"  # padded: [E, C, D] buffers + bmm

    def __post_init__(self) -> None:
        for name in ("capacity_factor", "eval_capacity_factor"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "a number > 0")
        if self.compute not in ("ragged", "padded"):
            raise ConfigError("capacity_compute", self.compute, "'ragged' or 'padded'")
        if self.dropless and self.compute == "padded":
            raise ConfigError("capacity_compute", "padded", "'ragged' when dropless is true")


@dataclass
class DispatchPlan:
    """Which assignments are kept and where their rows go (all sorted by expert).

    Counts live on the device (`counts_E`, `routed_E`); the Python lists `counts` and
    `routed` read them back (a host sync) only when asked for: the loop path and expert
    parallelism need them, the grouped path does not.
    """

    assign_S: torch.Tensor  # index into the k-major flat assignments, for the gate weights
    token_S: torch.Tensor  # token of each row
    expert_S: torch.Tensor  # expert of each row
    pos_S: torch.Tensor  # row position inside its expert's segment
    counts_E: torch.Tensor  # kept rows per expert
    routed_E: torch.Tensor  # assignments routed to each expert, before dropping
    keep_S: torch.Tensor | None = None  # device plans: False for the dropped rows at the end

    @property
    def counts(self) -> list[int]:
        return self._list("counts_E")

    @property
    def routed(self) -> list[int]:
        return self._list("routed_E")

    def _list(self, name: str) -> list[int]:
        cache = self.__dict__.setdefault("_lists", {})
        if name not in cache:
            cache[name] = getattr(self, name).tolist()
        return cache[name]


def plan_dispatch(
    expert_NK: torch.Tensor, n_experts: int, capacity: int | None, *, on_device: bool = False
) -> DispatchPlan:
    """Sort the assignments by expert and cut each expert's segment at `capacity`.

    Entries of -1 in `expert_NK` (removed by random routing) are not dispatched. The default
    plan keeps only the dispatched rows (their number is read back to the host). An
    `on_device` plan keeps all N * K rows, with what is dropped or removed sorted after
    every expert's kept rows and marked in `keep_S`: no value leaves the device.
    """
    n_tokens = expert_NK.shape[0]
    key_A = expert_NK.t().reshape(-1)
    key_A = torch.where(key_A < 0, n_experts, key_A)  # removed choices sort last
    order_A = torch.argsort(key_A, stable=True)
    routed_E1 = count_per_expert(key_A, n_experts + 1)
    start_E1 = torch.cumsum(routed_E1, 0) - routed_E1
    expert_A = key_A[order_A]
    pos_A = torch.arange(order_A.numel(), device=key_A.device) - start_E1[expert_A]
    routed_E = routed_E1[:n_experts]
    counts_E = routed_E if capacity is None else routed_E.clamp(max=capacity)
    if on_device:
        keep_A = expert_A < n_experts
        if capacity is not None:
            keep_A &= pos_A < capacity
            order2_A = torch.argsort(torch.where(keep_A, expert_A, n_experts), stable=True)
            order_A, expert_A, pos_A, keep_A = (
                t[order2_A] for t in (order_A, expert_A, pos_A, keep_A)
            )
        return DispatchPlan(
            assign_S=order_A, token_S=order_A % n_tokens, expert_S=expert_A, pos_S=pos_A,
            counts_E=counts_E, routed_E=routed_E, keep_S=keep_A,
        )  # fmt: skip
    n_routed = int(routed_E.sum())  # host sync: the default plan drops the removed rows
    assign_S, expert_S, pos_S = order_A[:n_routed], expert_A[:n_routed], pos_A[:n_routed]
    if capacity is not None:
        keep_S = pos_S < capacity
        assign_S, expert_S, pos_S = assign_S[keep_S], expert_S[keep_S], pos_S[keep_S]
    return DispatchPlan(
        assign_S=assign_S, token_S=assign_S % n_tokens, expert_S=expert_S, pos_S=pos_S,
        counts_E=counts_E, routed_E=routed_E,
    )  # fmt: skip


class Experts(Protocol):
    """What the layer needs from its experts (local `GroupedExperts` or expert-parallel)."""

    n_experts: int

    def __call__(self, x_SD: torch.Tensor, counts: list[int]) -> torch.Tensor: ...


class MoELayer(nn.Module):
    """Router + experts (+ optional shared expert), both pluggable.

    forward(x_BTD) -> (y_BTD, aux_loss, stats). aux_loss = aux_loss_weight * L_bal +
    z_loss_weight * L_z (see `moe_router`). stats: `tokens_per_expert` (assignments routed to
    each expert, before dropping), `drop_rate` (dropped / routed assignments), `balance`
    (max / mean of tokens_per_expert: 1.0 is perfectly even, E means one expert gets all;
    balance - 1 is the "max_vio" of arXiv 2408.15664), `dead_experts` (experts given none).
    """

    def __init__(
        self,
        *,
        router: TopKRouter,
        experts: nn.Module,
        dispatch: DispatchConfig,
        shared_expert: FeedForward | None = None,
        aux_loss_weight: float = 0.01,
        z_loss_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.router = router
        self.experts = experts
        self.shared_expert = shared_expert
        self.dispatch = dispatch
        self.aux_loss_weight = aux_loss_weight
        self.z_loss_weight = z_loss_weight

    @property
    def n_experts(self) -> int:
        return self.router.config.n_experts

    def capacity(self, n_tokens: int) -> int | None:
        """Rows each expert may take for a call of `n_tokens` tokens (None = dropless)."""
        if self.dispatch.dropless:
            return None
        cf = self.dispatch.capacity_factor if self.training else self.dispatch.eval_capacity_factor
        k = self.router.config.top_k
        return min(n_tokens, math.ceil(cf * k * n_tokens / self.n_experts))

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        x_ND = x_BTD.reshape(-1, x_BTD.shape[-1])
        n_tokens = x_ND.shape[0]
        routing = self.router(x_ND)
        capacity = self.capacity(n_tokens)
        on_device = self._grouped_on_device(n_tokens * self.router.config.top_k, x_ND.device)
        plan = plan_dispatch(routing.expert_TK, self.n_experts, capacity, on_device=on_device)
        weight_S = routing.weight_TK.t().reshape(-1).index_select(0, plan.assign_S)
        if self.dispatch.compute == "padded":
            y_SD = self._run_padded(x_ND, plan, capacity or 1)
        elif on_device:  # offsets from device counts; the dropped rows join the last group
            y_SD = self.experts.forward_grouped(x_ND.index_select(0, plan.token_S), plan.counts_E)
            y_SD = torch.where(plan.keep_S[:, None], y_SD, 0.0)  # ... and count for nothing
        else:
            y_SD = self.experts(x_ND.index_select(0, plan.token_S), plan.counts)
        y_ND = torch.zeros_like(x_ND).index_add(0, plan.token_S, y_SD * weight_S[:, None])
        if self.shared_expert is not None:
            y_ND = y_ND + self.shared_expert(x_ND)
        aux = self.aux_loss_weight * routing.balance_loss + self.z_loss_weight * routing.z_loss
        return y_ND.view_as(x_BTD), aux, layer_stats(plan)

    def _grouped_on_device(self, n_rows: int, device: torch.device) -> bool:
        """Whether this call runs grouped_mm on local experts: then the plan stays on the
        device (no host sync); the loop and expert parallelism need the counts on the host."""
        experts = self.experts
        if self.dispatch.compute != "ragged" or not isinstance(experts, GroupedExperts):
            return False
        return experts.resolved_compute(n_rows, device) == "grouped"

    def _run_padded(self, x_ND: torch.Tensor, plan: DispatchPlan, capacity: int) -> torch.Tensor:
        """Fixed shapes: gather rows into [E, C, D] (empty slots read a zero row), bmm, back."""
        n_tokens, d_model = x_ND.shape
        slot_S = plan.expert_S * capacity + plan.pos_S
        source_EC = slot_S.new_full((self.n_experts * capacity,), n_tokens)
        source_EC[slot_S] = plan.token_S
        x_padded_ND = torch.cat([x_ND, x_ND.new_zeros(1, d_model)])
        x_ECD = x_padded_ND.index_select(0, source_EC).view(self.n_experts, capacity, d_model)
        y_ECD = self.experts.forward_padded(x_ECD)
        return y_ECD.reshape(-1, d_model).index_select(0, slot_S)


class LayerStats(Mapping):
    """Per-layer routing statistics, read as a mapping of Python numbers. They are computed
    from the plan's device counts when first read (a host sync then, not in the forward);
    `drop_rate_tensor` stays on the device for the trainer's logging-step reduction."""

    def __init__(self, plan: DispatchPlan) -> None:
        self.plan = plan
        self._values: dict | None = None

    @property
    def drop_rate_tensor(self) -> torch.Tensor:
        routed = self.plan.routed_E.sum()
        return ((routed - self.plan.counts_E.sum()) / routed.clamp_min(1)).float()

    def _read(self) -> dict:
        if self._values is None:
            self._values = _stats_from(self.plan.routed, self.plan.counts)
        return self._values

    def __getitem__(self, key: str):
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


def layer_stats(plan: DispatchPlan) -> LayerStats:
    """Per-layer routing statistics (see `LayerStats`: no sync until they are read)."""
    return LayerStats(plan)


def _stats_from(routed: list[int], counts: list[int]) -> dict:
    total = sum(routed)
    mean = total / len(routed)
    return {
        "tokens_per_expert": list(routed),
        "drop_rate": (total - sum(counts)) / total if total else 0.0,
        "balance": max(routed) / mean if total else 1.0,
        "dead_experts": sum(1 for n in routed if n == 0),
    }
