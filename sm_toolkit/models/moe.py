"""Decoder-only Mixture-of-Experts transformer language model (GShard / Switch style).

Read top to bottom: config, attention, block, model. The MoE feed-forward layer itself is
in `moe_layer.py` (dispatch), `moe_router.py` (routing and losses), `moe_experts.py`
(expert MLPs) and `moe_parallel.py` (experts split across processes).

Legend for tensor names (suffix = shape):
    B batch, T sequence length, D d_model, V vocabulary, H heads, Dh head width

`forward(idx_BT)` returns `(logits_BTV, aux)`; add `aux.loss` to the cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.cpu_matmul import Linear
from sm_toolkit.models.moe_experts import (
    EXPERT_COMPUTES,
    EXPERT_KINDS,
    FeedForward,
    GroupedExperts,
    residual_std,
)
from sm_toolkit.models.moe_layer import DispatchConfig, MoELayer
from sm_toolkit.models.moe_router import RouterConfig, TopKRouter


@dataclass(frozen=True, kw_only=True)
class MoEConfig:
    """Model size and MoE options. Validated at construction (ConfigError names the field)."""

    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 256  # hidden width of ONE expert (and of the dense FFN when moe_every = 0)
    n_experts: int = 8
    top_k: int = 2
    moe_every: int = 1  # 1: every layer is MoE; 2: every other layer (GShard); 0: dense
    capacity_factor: float = 1.25
    eval_capacity_factor: float = 2.0
    dropless: bool = False
    capacity_compute: Literal["ragged", "padded"] = "ragged"
    aux_loss_weight: float = 0.01
    z_loss_weight: float = 0.001
    activation: str = "gelu"
    dropout: float = 0.0
    activation_checkpointing: bool = False
    normalize_top_k: bool = True
    jitter_eps: float = 0.0
    random_second_expert: bool = False
    balance_count: Literal["all_k", "top1"] = "all_k"
    bias_update_rate: float = 0.0  # > 0: auxiliary-loss-free balancing (DeepSeek-V3)
    shared_expert_d_ff: int = 0  # > 0: a dense expert every token also goes through
    experts_per_layer: tuple[int, ...] = ()  # PR-MoE: experts of each MoE layer, in order
    expert_kind: Literal["mlp", "swiglu"] = "mlp"  # swiglu: gated experts (Mixtral style)
    expert_compute: Literal["auto", "loop", "grouped"] = "auto"  # see moe_experts

    def __post_init__(self) -> None:
        # A JSON round trip (hyperparameters, checkpoints) turns the tuple into a list.
        object.__setattr__(self, "experts_per_layer", tuple(self.experts_per_layer))
        positive = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "d_ff")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "an integer >= 1")
        if self.d_model % self.n_head:
            raise ConfigError("n_head", self.n_head, f"a divisor of d_model={self.d_model}")
        if self.moe_every < 0:
            raise ConfigError("moe_every", self.moe_every, "0 (dense) or an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")
        for name in ("aux_loss_weight", "z_loss_weight", "shared_expert_d_ff"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "a number >= 0")
        if self.activation == "maxout":
            raise ConfigError("activation", "maxout", "an element-wise activation")
        if self.experts_per_layer and len(self.experts_per_layer) != len(self.moe_layers):
            raise ConfigError(
                "experts_per_layer",
                self.experts_per_layer,
                f"one count per MoE layer ({len(self.moe_layers)} layers: {self.moe_layers})",
            )
        for layer in self.moe_layers:  # builds (and so validates) each layer's options
            self.router_config(layer)
        self.dispatch_config()
        self._check_experts()

    def _check_experts(self) -> None:
        if self.expert_kind not in EXPERT_KINDS:
            raise ConfigError("expert_kind", self.expert_kind, f"one of {', '.join(EXPERT_KINDS)}")
        if self.expert_compute not in EXPERT_COMPUTES:
            allowed = f"one of {', '.join(EXPERT_COMPUTES)}"
            raise ConfigError("expert_compute", self.expert_compute, allowed)

    @property
    def moe_layers(self) -> tuple[int, ...]:
        """Indices of the MoE layers: with moe_every = m, layers m-1, 2m-1, ... (GShard: odd)."""
        if self.moe_every == 0:
            return ()
        return tuple(i for i in range(self.n_layer) if i % self.moe_every == self.moe_every - 1)

    def experts_in_layer(self, layer: int) -> int:
        if self.experts_per_layer:
            return self.experts_per_layer[self.moe_layers.index(layer)]
        return self.n_experts

    def router_config(self, layer: int) -> RouterConfig:
        return RouterConfig(
            d_model=self.d_model,
            n_experts=self.experts_in_layer(layer),
            top_k=self.top_k,
            normalize_weights=self.normalize_top_k,
            jitter_eps=self.jitter_eps,
            random_second_expert=self.random_second_expert,
            balance_count=self.balance_count,
            bias_update_rate=self.bias_update_rate,
        )

    def dispatch_config(self) -> DispatchConfig:
        return DispatchConfig(
            capacity_factor=self.capacity_factor,
            eval_capacity_factor=self.eval_capacity_factor,
            dropless=self.dropless,
            compute=self.capacity_compute,
        )

    @classmethod
    def debug(cls, vocab_size: int, **overrides: object) -> MoEConfig:
        """A size that trains in seconds on 2 CPU cores."""
        size = dict(block_size=32, n_layer=2, n_head=2, d_model=32, d_ff=64, n_experts=4)
        size.update(overrides)
        return cls(vocab_size=vocab_size, **size)  # type: ignore[arg-type]


@dataclass
class MoEAux:
    """Auxiliary outputs: `loss` (weighted balance + z-loss, summed over MoE layers) and one
    stats dict per MoE layer (see `MoELayer`)."""

    loss: torch.Tensor
    layers: list[dict] = field(default_factory=list)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = Linear(config.d_model, config.d_model, bias=False)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=residual_std(config.n_layer))
        self.dropout = config.dropout

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        q_BTD, k_BTD, v_BTD = self.qkv(x_BTD).split(D, dim=2)
        # (B, T, D) -> (B, H, T, Dh)
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q_BTD, k_BTD, v_BTD))
        drop = self.dropout if self.training else 0.0
        y_BHTDh = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.proj(y_BHTDh.transpose(1, 2).reshape(B, T, D))


def build_moe_layer(config: MoEConfig, layer: int) -> MoELayer:
    """The MoE feed-forward layer of block `layer`: router, experts, optional shared expert."""
    out_std = residual_std(config.n_layer)
    shared = None
    if config.shared_expert_d_ff:
        shared = FeedForward(
            d_model=config.d_model, d_ff=config.shared_expert_d_ff,
            activation=config.activation, out_std=out_std,
        )  # fmt: skip
    experts = GroupedExperts(
        n_experts=config.experts_in_layer(layer), d_model=config.d_model, d_ff=config.d_ff,
        activation=config.activation, out_std=out_std, kind=config.expert_kind,
        compute=config.expert_compute,
    )  # fmt: skip
    return MoELayer(
        router=TopKRouter(config.router_config(layer)),
        experts=experts,
        dispatch=config.dispatch_config(),
        shared_expert=shared,
        aux_loss_weight=config.aux_loss_weight,
        z_loss_weight=config.z_loss_weight,
    )


class Block(nn.Module):
    """Pre-norm transformer block; the feed-forward part is an MoE layer or a dense FFN."""

    def __init__(self, config: MoEConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.ffn: nn.Module
        if layer in config.moe_layers:
            self.ffn = build_moe_layer(config, layer)
        else:
            self.ffn = FeedForward(
                d_model=config.d_model, d_ff=config.d_ff, activation=config.activation,
                out_std=residual_std(config.n_layer),
            )  # fmt: skip
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, dict | None]:
        x_BTD = x_BTD + self.drop(self.attn(self.ln1(x_BTD)))
        if isinstance(self.ffn, MoELayer):
            y_BTD, aux, stats = self.ffn(self.ln2(x_BTD))
            return x_BTD + self.drop(y_BTD), aux, stats
        return x_BTD + self.drop(self.ffn(self.ln2(x_BTD))), None, None


class MoETransformer(nn.Module):
    """GPT-style LM with MoE feed-forward layers. forward(idx_BT) -> (logits_BTV, MoEAux)."""

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (nanoGPT)

    def forward(self, idx_BT: torch.Tensor) -> tuple[torch.Tensor, MoEAux]:
        B, T = idx_BT.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} > block_size {self.config.block_size}")
        if self.training:
            self.update_expert_biases()  # before any block runs, so recomputation agrees
        pos_T = torch.arange(T, device=idx_BT.device)
        x_BTD = self.drop(self.wte(idx_BT) + self.wpe(pos_T))
        aux = MoEAux(loss=x_BTD.new_zeros(()))
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training:
                x_BTD, layer_aux, stats = checkpoint(block, x_BTD, use_reentrant=False)
            else:
                x_BTD, layer_aux, stats = block(x_BTD)
            if layer_aux is not None:
                aux.loss = aux.loss + layer_aux
                aux.layers.append(stats)
        return self.lm_head(self.ln_f(x_BTD)), aux

    def moe_layers(self) -> list[MoELayer]:
        return [m for m in self.modules() if isinstance(m, MoELayer)]

    @torch.no_grad()
    def update_expert_biases(self) -> None:
        """Apply the auxiliary-loss-free bias step from the loads counted since the last call.

        Called at the start of every training forward; a no-op unless bias_update_rate > 0.
        """
        if self.config.bias_update_rate > 0:
            for layer in self.moe_layers():
                layer.router.update_bias()

    def expert_parameters(self) -> list[nn.Parameter]:
        """Parameters of routed experts (per-rank under expert parallelism)."""
        return [p for p in self.parameters() if getattr(p, "is_expert", False)]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (replicated; all-reduce these under data parallelism)."""
        return [p for p in self.parameters() if not getattr(p, "is_expert", False)]
