"""MoE transformer: interface, layer layout, checkpointing, bias balancing, training."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.moe import MoEConfig, MoETransformer

VOCAB = 17


def batch(seed: int = 0, b: int = 4, t: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (b, t), generator=g)


def test_forward_returns_logits_aux_loss_and_stats():
    model = MoETransformer(MoEConfig.debug(VOCAB))
    logits, aux = model(batch())
    assert logits.shape == (4, 16, VOCAB)
    assert aux.loss.dim() == 0 and aux.loss.item() > 0 and aux.loss.requires_grad
    assert len(aux.layers) == 2
    for stats in aux.layers:
        assert set(stats) >= {"tokens_per_expert", "drop_rate", "balance"}
        assert len(stats["tokens_per_expert"]) == 4
        assert sum(stats["tokens_per_expert"]) == 4 * 16 * 2  # every token routed twice
        assert all(isinstance(n, int) for n in stats["tokens_per_expert"])
        assert 0.0 <= stats["drop_rate"] <= 1.0 and stats["balance"] >= 1.0


def test_moe_every_other_layer_and_dense_baseline():
    gshard = MoETransformer(MoEConfig.debug(VOCAB, n_layer=4, moe_every=2))
    assert gshard.config.moe_layers == (1, 3)
    assert len(gshard.moe_layers()) == 2
    dense = MoETransformer(MoEConfig.debug(VOCAB, moe_every=0))
    _, aux = dense(batch())
    assert aux.layers == [] and aux.loss.item() == 0.0
    assert dense.expert_parameters() == []


def test_pr_moe_expert_counts_per_layer():
    config = MoEConfig.debug(VOCAB, n_layer=4, moe_every=2, experts_per_layer=(2, 8))
    model = MoETransformer(config)
    assert [layer.n_experts for layer in model.moe_layers()] == [2, 8]
    assert [layer.experts.w1_EDH.shape[0] for layer in model.moe_layers()] == [2, 8]
    _, aux = model(batch())
    assert [len(s["tokens_per_expert"]) for s in aux.layers] == [2, 8]


def test_expert_and_dense_parameters_partition_the_model():
    model = MoETransformer(MoEConfig.debug(VOCAB, shared_expert_d_ff=16))
    experts = {id(p) for p in model.expert_parameters()}
    dense = {id(p) for p in model.dense_parameters()}
    assert experts and dense and not experts & dense
    assert experts | dense == {id(p) for p in model.parameters()}
    expert_names = [n for n, p in model.named_parameters() if id(p) in experts]
    assert all("experts" in n and "shared" not in n for n in expert_names)


@pytest.mark.parametrize(
    "options",
    [{}, {"jitter_eps": 0.1, "random_second_expert": True, "dropout": 0.1, "dropless": True}],
)
def test_activation_checkpointing_gives_identical_gradients(options, one_thread):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        cfg = MoEConfig.debug(VOCAB, activation_checkpointing=checkpointing, **options)
        model = MoETransformer(cfg)
        torch.manual_seed(1)  # same noise in both runs; checkpoint replays the RNG state
        logits, aux = model(batch())
        (logits.square().mean() + aux.loss).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_aux_loss_free_bias_moves_against_the_load():
    model = MoETransformer(MoEConfig.debug(VOCAB, bias_update_rate=0.05, aux_loss_weight=0.0))
    router = model.moe_layers()[0].router
    with torch.no_grad():  # push most tokens to expert 0
        router.gate.weight[0] += 1.0
    model(batch())
    load = router.load_E.clone()
    assert load.sum() == 4 * 16 * 2
    model(batch(1))  # the next training forward applies the step first
    expected = 0.05 * torch.sign(load.mean() - load)
    torch.testing.assert_close(router.expert_bias_E, expected)
    assert router.expert_bias_E[load.argmax()] < 0
    model.eval()
    before = router.expert_bias_E.clone()
    model(batch(2))
    torch.testing.assert_close(router.expert_bias_E, before)  # evaluation never updates


@pytest.fixture
def one_thread(torch_threads):
    """Tiny matmuls: a second thread only adds synchronisation (10x slower on a busy machine)."""
    torch_threads(1)


def test_model_trains_on_a_tiny_task(one_thread):
    torch.manual_seed(0)
    model = MoETransformer(MoEConfig.debug(VOCAB))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = batch(3, b=8, t=17)
    losses = []
    for _ in range(40):
        logits, aux = model(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), data[:, 1:].reshape(-1))
        optimizer.zero_grad()
        (loss + aux.loss).backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_head": 3}, "n_head"),
        ({"top_k": 5}, "top_k"),
        ({"moe_every": -1}, "moe_every"),
        ({"experts_per_layer": (4,)}, "experts_per_layer"),
        ({"activation": "maxout"}, "activation"),
        ({"capacity_factor": -1.0}, "capacity_factor"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        MoEConfig.debug(VOCAB, **overrides)
    assert err.value.field == field


def test_sequence_longer_than_block_size_is_refused():
    model = MoETransformer(MoEConfig.debug(VOCAB, block_size=8))
    with pytest.raises(ValueError, match="block_size"):
        model(batch(t=9))


def test_config_survives_a_json_round_trip():
    config = MoEConfig.debug(VOCAB, n_layer=4, moe_every=2, experts_per_layer=(2, 4))
    again = MoEConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config
