"""Top-k token router for Mixture-of-Experts layers.

The router only decides *where* each token goes and with what weight; dispatching the
tokens and running the experts live in `moe_layer.py` and `moe_experts.py`, so either part
can be swapped (Tutel-style).

Legend for tensor names (suffix = shape):
    T tokens in this call (batch * sequence, flattened)
    D model width
    E experts in this layer
    K experts chosen per token (top_k)

Load-balancing loss (the GShard / Switch auxiliary loss), exactly as computed here:

    L_bal = E * sum_e f_e * P_e
    P_e   = (1/T) * sum_t p_te                 mean router probability of expert e
    f_e   = n_e / (T * K)   with balance_count="all_k": n_e counts all T*K top-k choices
    f_e   = n_e / T         with balance_count="top1":  n_e counts first choices only

The two published forms differ in what f counts. Switch (k = 1) and GShard's Algorithm 1
count only each token's first choice (`top1`; fairseq's Top2Gate uses mask1 likewise);
Megatron-Core and DeepSeek count every one of the k choices (`all_k`). GShard's paper also
writes the loss as a mean over experts, (1/E) sum_e f_e P_e, which is E^2 smaller than the
form above; its implementations multiply by E^2, which gives the form used here. Counts
are taken before random routing and capacity dropping, and carry no gradient (the
gradient flows through P_e). Perfectly uniform routing (f_e = 1/E) gives exactly 1.0,
the value a balanced router settles at; all tokens on one expert with probability 1 gives E.

Router z-loss (ST-MoE): L_z = (1/T) * sum_t (logsumexp_e logits_te)^2.

Auxiliary-loss-free balancing (DeepSeek-V3): a per-expert bias is added to the scores for
*selection only* (the gate weights use the unbiased probabilities). After each training
forward, `update_bias()` moves bias_e by `rate * sign(mean_load - load_e)`; it is a buffer,
never touched by the optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sm_toolkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """Options of the top-k router. Validated at construction."""

    d_model: int
    n_experts: int
    top_k: int = 2
    normalize_weights: bool = True  # k > 1: k gate weights sum to 1 (k = 1 keeps p, Switch)
    jitter_eps: float = 0.0  # training only: router input * U(1 - eps, 1 + eps) (Switch)
    random_second_expert: bool = False  # GShard: keep 2nd expert iff U(0,1) < 2 * w_2
    balance_count: Literal["all_k", "top1"] = "all_k"
    bias_update_rate: float = 0.0  # > 0 turns on auxiliary-loss-free bias balancing

    def __post_init__(self) -> None:
        if self.n_experts < 1:
            raise ConfigError("n_experts", self.n_experts, "an integer >= 1")
        if not 1 <= self.top_k <= self.n_experts:
            raise ConfigError("top_k", self.top_k, f"an integer in 1..n_experts={self.n_experts}")
        if not 0.0 <= self.jitter_eps < 1.0:
            raise ConfigError("jitter_eps", self.jitter_eps, "a number in [0, 1)")
        if self.random_second_expert and self.top_k < 2:
            raise ConfigError("random_second_expert", True, "only with top_k >= 2")
        if self.balance_count not in ("all_k", "top1"):
            raise ConfigError("balance_count", self.balance_count, "'all_k' or 'top1'")
        if self.bias_update_rate < 0:
            raise ConfigError("bias_update_rate", self.bias_update_rate, "a number >= 0")


@dataclass
class Routing:
    """What the router decided for one call.

    `expert_TK` holds -1 where random routing removed the choice (no dispatch, weight 0).
    """

    expert_TK: torch.Tensor  # int64
    weight_TK: torch.Tensor  # float, differentiable w.r.t. router parameters
    balance_loss: torch.Tensor  # scalar, L_bal above
    z_loss: torch.Tensor  # scalar, L_z above


def count_per_expert(index_A: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of 0..n-1 occurs in `index_A` (int64, on its device). The same
    numbers as `torch.bincount(index_A, minlength=n)` for indices < n, but without its host
    sync: on CUDA bincount reads the maximum index back to size its output."""
    return torch.zeros(n, dtype=torch.long, device=index_A.device).scatter_add_(
        0, index_A, torch.ones_like(index_A)
    )


def load_balancing_loss(
    probs_TE: torch.Tensor, chosen_TK: torch.Tensor, count: Literal["all_k", "top1"] = "all_k"
) -> torch.Tensor:
    """L_bal = E * sum_e f_e * P_e (see the module docstring for f_e under each `count`)."""
    n_tokens, n_experts = probs_TE.shape
    picks = chosen_TK if count == "all_k" else chosen_TK[:, :1]
    counts_E = count_per_expert(picks.reshape(-1), n_experts).to(probs_TE.dtype)
    f_E = counts_E / picks.numel()
    P_E = probs_TE.mean(dim=0)
    return n_experts * torch.sum(f_E * P_E)


def router_z_loss(logits_TE: torch.Tensor) -> torch.Tensor:
    """L_z = mean_t logsumexp(logits_t)^2 (ST-MoE): keeps router logits small."""
    return torch.logsumexp(logits_TE, dim=-1).square().mean()


class TopKRouter(nn.Module):
    """Linear router: softmax over experts in fp32, top-k selection, gate weights."""

    def __init__(self, config: RouterConfig) -> None:
        super().__init__()
        self.config = config
        self.gate = nn.Linear(config.d_model, config.n_experts, bias=False)
        # Buffers, not parameters: the optimizer never sees them.
        self.register_buffer("expert_bias_E", torch.zeros(config.n_experts))
        self.register_buffer("load_E", torch.zeros(config.n_experts))

    def forward(self, x_TD: torch.Tensor) -> Routing:
        cfg = self.config
        if self.training and cfg.jitter_eps > 0:
            noise_TD = torch.empty_like(x_TD).uniform_(1.0 - cfg.jitter_eps, 1.0 + cfg.jitter_eps)
            x_TD = x_TD * noise_TD
        logits_TE = self.gate(x_TD).float()
        probs_TE = logits_TE.softmax(dim=-1)
        if cfg.bias_update_rate > 0:
            # The bias only changes which experts are chosen, never the gate weights.
            chosen_TK = torch.topk(probs_TE.detach() + self.expert_bias_E, cfg.top_k).indices
        else:
            chosen_TK = torch.topk(probs_TE.detach(), cfg.top_k).indices
        weight_TK = probs_TE.gather(1, chosen_TK)
        if cfg.normalize_weights and cfg.top_k > 1:
            weight_TK = weight_TK / weight_TK.sum(dim=-1, keepdim=True).clamp_min(1e-9)
        expert_TK = chosen_TK
        if cfg.random_second_expert and self.training:
            expert_TK, weight_TK = self._random_second(chosen_TK, weight_TK)
        if self.training and cfg.bias_update_rate > 0:
            with torch.no_grad():
                self.load_E += count_per_expert(chosen_TK.reshape(-1), cfg.n_experts)
        balance = load_balancing_loss(probs_TE, chosen_TK, cfg.balance_count)
        return Routing(
            expert_TK=expert_TK,
            weight_TK=weight_TK.to(x_TD.dtype),
            balance_loss=balance,
            z_loss=router_z_loss(logits_TE),
        )

    @staticmethod
    def _random_second(
        chosen_TK: torch.Tensor, weight_TK: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GShard: dispatch the 2nd choice only with probability min(1, 2 * w_2 / (w_1 + w_2))."""
        w2_T = (weight_TK[:, 1] / weight_TK[:, :2].sum(dim=-1).clamp_min(1e-9)).detach()
        keep_T = torch.rand_like(w2_T) < 2.0 * w2_T
        expert_TK = chosen_TK.clone()
        expert_TK[:, 1] = torch.where(keep_T, chosen_TK[:, 1], torch.full_like(chosen_TK[:, 1], -1))
        keep_TK = torch.ones_like(weight_TK)
        keep_TK[:, 1] = keep_T.to(weight_TK.dtype)
        weight_TK = weight_TK * keep_TK
        return expert_TK, weight_TK

    @torch.no_grad()
    def update_bias(self) -> None:
        """Auxiliary-loss-free step: bias_e += rate * sign(mean load - load_e); resets the load.

        Loads are summed over all processes when torch.distributed is initialised, so every
        data- or expert-parallel rank moves its bias the same way. Recomputation under
        activation checkpointing counts a forward twice, which leaves the signs unchanged.
        """
        rate = self.config.bias_update_rate
        if rate <= 0:
            return
        load_E = self.load_E.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load_E)
        if load_E.sum() > 0:
            self.expert_bias_E += rate * torch.sign(load_E.mean() - load_E)
        self.load_E.zero_()
