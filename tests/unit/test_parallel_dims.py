"""ParallelDims: degrees checked once (bad inputs tried: TP 2, hybrid 3 of 4, hybrid 5 of
4, EP 3 of 4, EP not dividing the experts, EP on a model without experts) and the modes
they select; expert-group layout; optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe import MoEConfig, MoETransformer
from sm_toolkit.train.optim import param_groups
from sm_toolkit.train.parallel import ParallelDims, expert_group_ranks


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(tensor_parallel_degree=2), "tensor_parallel_degree"),
        (dict(hybrid_shard_degree=3), "hybrid_shard_degree"),
        (dict(hybrid_shard_degree=5), "hybrid_shard_degree"),
        (dict(expert_parallel_degree=3, n_experts=6), "expert_parallel_degree"),
        (dict(expert_parallel_degree=4, n_experts=6), "expert_parallel_degree"),
        (dict(expert_parallel_degree=2), "expert_parallel_degree"),
    ],
)
def test_bad_degrees_are_one_config_error_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        ParallelDims(world_size=4, **kwargs)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_modes_selected_by_the_degrees():
    ddp = ParallelDims(world_size=4)
    assert ddp.use_ddp and (ddp.dp_shard, ddp.dp_replicate) == (1, 4)
    full = ParallelDims(world_size=4, hybrid_shard_degree=4)
    assert not full.use_ddp and (full.dp_shard, full.dp_replicate) == (4, 1)
    hsdp = ParallelDims(world_size=4, hybrid_shard_degree=2)
    assert (hsdp.dp_shard, hsdp.dp_replicate) == (2, 2)
    ep = ParallelDims(world_size=4, expert_parallel_degree=2, n_experts=4)
    assert not ep.use_ddp and ep.dp_shard == 4  # experts sharded: FSDP2, never DDP
    assert "expert parallel 2" in ep.describe()


def test_expert_groups_are_consecutive_blocks_and_replicas_strided():
    dims = ParallelDims(world_size=4, expert_parallel_degree=2, n_experts=4)
    ep_groups, replicas = expert_group_ranks(dims)
    assert ep_groups == [[0, 1], [2, 3]]
    assert replicas == [[0, 2], [1, 3]]  # ranks 0 and 2 hold the same experts


def test_parameter_groups_no_decay_on_biases_norms_embeddings_experts_apart():
    model = MoETransformer(MoEConfig.debug(vocab_size=20))
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    assert set(groups) == {"decay", "no_decay", "experts"}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert groups["decay"]["weight_decay"] == groups["experts"]["weight_decay"] == 0.1
    assert id(model.wte.weight) in ids["no_decay"]  # embedding (tied to lm_head): once
    assert id(model.ln_f.weight) in ids["no_decay"] and id(model.ln_f.bias) in ids["no_decay"]
    assert id(model.blocks[0].attn.qkv.weight) in ids["decay"]
    assert ids["experts"] == {id(p) for p in model.expert_parameters()}
    n_unique = len({id(p) for p in model.parameters()})
    assert sum(len(g["params"]) for g in groups.values()) == n_unique


def test_parameter_groups_of_a_plain_net_and_the_decay_they_get():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = {g["name"]: g for g in param_groups(net, 0.5)}
    assert [p.shape for p in groups["decay"]["params"]] == [(4, 3), (2, 4)]
    assert len(groups["no_decay"]["params"]) == 4  # two biases + norm weight and bias
    opt = torch.optim.AdamW(list(groups.values()), lr=1.0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only the decoupled decay moves weights
    before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    after = dict(zip(map(id, net.parameters()), before, strict=True))
    for p in groups["decay"]["params"]:
        torch.testing.assert_close(p, after[id(p)] * 0.5)  # w * (1 - lr * weight_decay)
    for p in groups["no_decay"]["params"]:
        torch.testing.assert_close(p, after[id(p)])


def test_job_dims_come_from_the_hyperparameters_and_refuse_penalties_when_sharded():
    import argparse

    from sm_toolkit.runtime.distributed import DistInfo
    from sm_toolkit.train.app import parallel_dims
    from sm_toolkit.train.families import Built

    built = Built(task=None, family="moe", model_config={"moe_every": 1, "n_experts": 4})
    base = dict(hybrid_shard_degree=0, expert_parallel_degree=2, tensor_parallel_degree=1)
    dist = DistInfo(rank=0, world_size=4)
    dims = parallel_dims(argparse.Namespace(**base, l1=0.0, l2=0.0), dist, built)
    assert (dims.ep, dims.n_experts, dims.dp_shard) == (2, 4, 4)
    with pytest.raises(ConfigError) as err:
        parallel_dims(argparse.Namespace(**base, l1=0.0, l2=0.01), dist, built)
    assert err.value.field == "l2"
    dense = Built(task=None, family="moe", model_config={"moe_every": 0, "n_experts": 4})
    with pytest.raises(ConfigError, match="without experts"):
        parallel_dims(argparse.Namespace(**base, l1=0.0, l2=0.0), dist, dense)
