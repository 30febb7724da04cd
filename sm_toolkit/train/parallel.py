"""How the model is spread over processes: one value object, applied in one order.

`ParallelDims` holds the degrees (SageMaker model parallelism v2's names, so a job means
the same thing here and on AWS) and checks them once:

    hybrid_shard_degree      0: the script's native data parallelism (DDP) when there are
                             no experts to shard, full FSDP2 sharding over every rank when
                             there are; n >= 1: FSDP2 sharding over groups of n consecutive
                             ranks, replicated across the world / n groups (HSDP; n = 1 is
                             pure replication, n = world is full sharding)
    expert_parallel_degree   routed experts split over groups of this many consecutive
                             ranks (rows travel by all-to-all, `models/moe_parallel.py`)
    tensor_parallel_degree   only 1 (not implemented; refused in one line)

`apply_parallelism` applies them in this order (torchtitan's order, without TP/PP):
 1. expert parallelism: each rank keeps its slice of every MoE layer's experts;
 2. FSDP2 `fully_shard` on every transformer block / top-level child, then on the root,
    over a (replicate, shard) `DeviceMesh`; expert parameters are left out of FSDP;
    or DDP when the dims ask for it.
Expert gradients: a rank's local expert gradient already sums the contributions of the
tokens every rank of its EP group sent it (the all-to-all backward). The ranks that hold
the same experts (same position in their EP group) then SUM those over their group and the
result is divided by the world size: the single-process gradient of the global mean loss.
Averaging them as if they were replicated would be too small by a factor of ep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from sm_toolkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ParallelDims:
    """Parallelism degrees of one job, validated when made."""

    world_size: int
    hybrid_shard_degree: int = 0
    expert_parallel_degree: int = 1
    tensor_parallel_degree: int = 1
    n_experts: int = 0  # experts per MoE layer (0: a model without experts)

    def __post_init__(self) -> None:
        w = self.world_size
        if self.tensor_parallel_degree != 1:
            raise ConfigError(
                "tensor_parallel_degree", self.tensor_parallel_degree,
                "1 (tensor parallelism is not implemented in sm-toolkit; use "
                "hybrid_shard_degree / expert_parallel_degree)",
            )  # fmt: skip
        if not 0 <= self.hybrid_shard_degree <= w or (
            self.hybrid_shard_degree and w % self.hybrid_shard_degree
        ):
            raise ConfigError(
                "hybrid_shard_degree", self.hybrid_shard_degree,
                f"0 or a divisor of the world size {w}",
            )  # fmt: skip
        ep = self.expert_parallel_degree
        if ep < 1 or w % ep:
            raise ConfigError("expert_parallel_degree", ep, f"a divisor of the world size {w}")
        if ep > 1 and not self.n_experts:
            raise ConfigError("expert_parallel_degree", ep, "1 for a model without experts")
        if ep > 1 and self.n_experts % ep:
            raise ConfigError(
                "expert_parallel_degree", ep, f"a divisor of n_experts={self.n_experts}"
            )

    @property
    def ep(self) -> int:
        return self.expert_parallel_degree

    @property
    def use_ddp(self) -> bool:
        """Plain DDP: the native fallback (degree 0) when no experts are sharded."""
        return self.hybrid_shard_degree == 0 and self.ep == 1

    @property
    def dp_shard(self) -> int:
        """Ranks one copy of the (dense) parameters is sharded over."""
        if self.use_ddp:
            return 1
        return self.hybrid_shard_degree or self.world_size

    @property
    def dp_replicate(self) -> int:
        return self.world_size // self.dp_shard

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        mode = (
            "ddp"
            if self.use_ddp
            else f"fsdp2 shard {self.dp_shard} x replicate {self.dp_replicate}"
        )
        return f"{mode}, expert parallel {self.ep}, world {self.world_size}"


def expert_group_ranks(dims: ParallelDims) -> tuple[list[list[int]], list[list[int]]]:
    """(EP groups, expert-replica groups) as rank lists.

    EP groups are consecutive blocks of ep ranks; the replica group of rank r is every rank
    at the same position r % ep in its block (they hold the same experts).
    """
    w, ep = dims.world_size, dims.ep
    ep_groups = [list(range(start, start + ep)) for start in range(0, w, ep)]
    replica_groups = [list(range(pos, w, ep)) for pos in range(ep)]
    return ep_groups, replica_groups


class Parallelized:
    """What `apply_parallelism` returns: the model to train and its expert-gradient step."""

    def __init__(
        self, model: nn.Module, dims: ParallelDims, *, ep_group=None, replica_group=None
    ) -> None:
        self.model = model
        self.dims = dims
        self.ep_group = ep_group
        self.replica_group = replica_group
        self.device_type = "cpu"
        self._mesh = None
        self.expert_params = [p for p in model.parameters() if getattr(p, "is_expert", False)]

    def reduce_expert_grads(self) -> None:
        """Sum expert gradients over the ranks holding the same experts, / world size."""
        if self.dims.ep == 1 or not self.expert_params:
            return
        grads = [p.grad for p in self.expert_params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one collective, on the device
        if self.dims.world_size // self.dims.ep > 1:
            dist.all_reduce(flat, group=self.replica_group)
        flat.div_(self.dims.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def _new_groups(rank_lists: list[list[int]], rank: int):
    """Every rank must create every group (torch's rule); return the one holding `rank`."""
    mine = None
    for ranks in rank_lists:
        group = dist.new_group(ranks)
        if rank in ranks:
            mine = group
    return mine


def _shard_units(model: nn.Module) -> list[nn.Module]:
    """Modules that get their own fully_shard: transformer blocks, else top-level children
    that hold parameters (one all-gather per unit keeps peak memory to about one unit)."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList):
        return list(blocks)
    return [m for m in model.children() if any(True for _ in m.parameters())]


def apply_parallelism(model: nn.Module, dims: ParallelDims, device: torch.device) -> Parallelized:
    """Shard `model` (built identically, same seed, on every rank) in place; see the module."""
    if not dims.enabled:
        return Parallelized(model, dims)
    out = _apply(model, dims, device)
    out.device_type = device.type
    return out


def _apply(model: nn.Module, dims: ParallelDims, device: torch.device) -> Parallelized:
    rank = dist.get_rank()
    ep_group = replica_group = None
    if dims.ep > 1:
        from sm_toolkit.models.moe_parallel import shard_experts

        ep_groups, replica_groups = expert_group_ranks(dims)
        ep_group = _new_groups(ep_groups, rank)
        replica_group = _new_groups(replica_groups, rank)
        shard_experts(model, ep_group)
    if dims.use_ddp:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids)
        return Parallelized(ddp, dims, ep_group=ep_group, replica_group=replica_group)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if dims.dp_replicate == 1:
        mesh = init_device_mesh(device.type, (dims.dp_shard,), mesh_dim_names=("shard",))
    else:  # HSDP: shard within groups of dp_shard ranks, all-reduce across the groups
        mesh = init_device_mesh(
            device.type, (dims.dp_replicate, dims.dp_shard), mesh_dim_names=("replicate", "shard")
        )
    expert_names = {n for n, p in model.named_parameters() if getattr(p, "is_expert", False)}
    # Sharded over the EP group already: FSDP leaves them alone (reduce_expert_grads does).
    ignored = {p for p in model.parameters() if getattr(p, "is_expert", False)}
    ignored = ignored if dims.ep > 1 else None
    for unit in _shard_units(model):
        fully_shard(unit, mesh=mesh, ignored_params=ignored)
    fully_shard(model, mesh=mesh, ignored_params=ignored)
    for name, p in model.named_parameters():  # FSDP's new DTensor parameters lose the mark
        if name in expert_names:
            p.is_expert = True  # type: ignore[attr-defined]
    return Parallelized(model, dims, ep_group=ep_group, replica_group=replica_group)


def clip_grad_norm(parallel: Parallelized, max_norm: float) -> torch.Tensor:
    """Clip every gradient by the global 2-norm (returned, on the device, no host sync).

    Works across the three kinds of parameters: plain, FSDP2 DTensors (their norm is a
    DTensor reduced by `full_tensor`) and expert shards (squared norm summed over the EP
    group, whose ranks hold different experts). Same formula as torch's clip_grad_norm_.
    """
    from torch.distributed.tensor import DTensor

    params = [p for p in parallel.model.parameters() if p.grad is not None]
    experts = [p.grad for p in params if getattr(p, "is_expert", False)]
    dense = [p.grad for p in params if not getattr(p, "is_expert", False)]
    if not params:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm(dense, 2.0) if dense else None
    total = total.full_tensor() if isinstance(total, DTensor) else total
    if experts and parallel.dims.ep > 1:  # shards hold different experts: sum the squares
        sq = torch.nn.utils.get_total_norm(experts, 2.0).square()
        dist.all_reduce(sq, group=parallel.ep_group)
        total = (sq if total is None else total.square() + sq).sqrt()
    elif experts:  # one norm over all, as torch computes it (bit-identical single process)
        total = torch.nn.utils.get_total_norm(dense + experts, 2.0)
        total = total.full_tensor() if isinstance(total, DTensor) else total
    if max_norm != float("inf"):
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in dense + experts:
            (g.to_local() if isinstance(g, DTensor) else g).mul_(coef)
    return total


def full_state_dict(parallel: Parallelized) -> dict[str, torch.Tensor]:
    """The unsharded model's state_dict (keys as in the plain model), valid on every rank.

    Every rank must call it (DTensors are all-gathered, expert shards gathered over the
    EP group), in the same order, which iterating one state_dict guarantees.
    """
    from torch.distributed.tensor import DTensor

    experts = {id(p) for p in parallel.expert_params}
    expert_names = {n for n, p in parallel.model.named_parameters() if id(p) in experts}
    out: dict[str, torch.Tensor] = {}
    for name, value in parallel.model.state_dict().items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        elif name in expert_names and parallel.dims.ep > 1:
            parts = [torch.empty_like(value) for _ in range(parallel.dims.ep)]
            dist.all_gather(parts, value.contiguous(), group=parallel.ep_group)
            value = torch.cat(parts, dim=0)
            name = name.replace(".experts.local.", ".experts.")
        out[name.removeprefix("module.")] = value.detach().cpu()
    return out


# ------------------------------------------------------------------ sharded checkpoints
def _expert_mesh(parallel: Parallelized):
    """(replica, ep) mesh: row = one EP group (consecutive ranks), column = its replicas."""
    from torch.distributed.device_mesh import init_device_mesh

    if getattr(parallel, "_mesh", None) is None:
        dims = parallel.dims
        parallel._mesh = init_device_mesh(
            parallel.device_type, (dims.world_size // dims.ep, dims.ep),
            mesh_dim_names=("ep_replica", "ep"),
        )  # fmt: skip
    return parallel._mesh


def _plain_name(fqn: str) -> str:
    return fqn.removeprefix("module.").replace(".experts.local.", ".experts.")


def checkpoint_shards(parallel: Parallelized, optimizer) -> tuple[dict, list[dict]]:
    """Model and optimizer state as one flat dict of tensors for DCP, keyed by the
    plain model's names, and the optimizer's param_groups (plain data, saved apart).

    FSDP2 parameters are DTensors already; an expert shard (a plain tensor holding this
    rank's slice) is wrapped as a DTensor Shard(0) over its EP group and Replicate over
    its replicas, so DCP stores the global [E, ...] tensor once and can reshard it.
    """
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.tensor import DTensor, Replicate, Shard

    msd, osd = get_state_dict(parallel.model, optimizer)
    expert = {n for n, p in parallel.model.named_parameters() if getattr(p, "is_expert", False)}
    wrap_experts = parallel.dims.ep > 1

    def glob(fqn: str, t: torch.Tensor) -> torch.Tensor:
        if wrap_experts and fqn in expert and not isinstance(t, DTensor) and t.dim() > 0:
            return DTensor.from_local(t, _expert_mesh(parallel), [Replicate(), Shard(0)])
        return t

    flat = {f"model.{_plain_name(k)}": glob(k, v) for k, v in msd.items()}
    for fqn, stats in osd["state"].items():
        for stat, value in stats.items():
            flat[f"optim.{_plain_name(fqn)}.{stat}"] = glob(fqn, value)
    groups = [{**g, "params": [_plain_name(f) for f in g["params"]]} for g in osd["param_groups"]]
    return flat, groups


def restore_shards(parallel: Parallelized, optimizer, flat: dict, groups: list[dict]) -> None:
    """Inverse of `checkpoint_shards` after DCP filled `flat` in place."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.tensor import DTensor

    msd, osd = get_state_dict(parallel.model, optimizer)
    expert = {n for n, p in parallel.model.named_parameters() if getattr(p, "is_expert", False)}

    def local(fqn: str, t: torch.Tensor) -> torch.Tensor:
        if parallel.dims.ep > 1 and fqn in expert and isinstance(t, DTensor):
            return t.to_local()
        return t

    model = {k: local(k, flat[f"model.{_plain_name(k)}"]) for k in msd}
    state = {
        fqn: {s: local(fqn, flat[f"optim.{_plain_name(fqn)}.{s}"]) for s in stats}
        for fqn, stats in osd["state"].items()
    }
    names = {_plain_name(f): f for g in osd["param_groups"] for f in g["params"]}
    param_groups = [{**g, "params": [names[f] for f in g["params"]]} for g in groups]
    set_state_dict(
        parallel.model, optimizer, model_state_dict=model,
        optim_state_dict={"state": state, "param_groups": param_groups},
    )  # fmt: skip
