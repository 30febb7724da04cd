import copy
import math

import pytest
import torch
import torch.nn.functional as F
from trainer_helpers import digits_task, lm_task

from sm_toolkit.errors import ConfigError
from sm_toolkit.train.config import TrainConfig
from sm_toolkit.train.optim import build_optimizer, fused, lr_factor, param_groups, weight_penalty
from sm_toolkit.train.trainer import Trainer


def quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_lowers_the_loss(optimizer):
    lr = {"sgd": 0.05, "rmsprop": 1e-3}.get(optimizer, 3e-3)
    config = TrainConfig(epochs=3, batch_size=32, lr=lr, optimizer=optimizer, log_every=5)
    result = Trainer(config, digits_task(), emit=quiet).fit()
    losses = [e["train:loss"] for e in result.state.epochs]
    assert losses[-1] < losses[0]
    assert result.state.step == 3 * 6  # 210 training samples // 32


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_optimizer_runs_fused_and_updates_as_the_loop_does(optimizer):
    torch.manual_seed(0)
    # Biases and weights: both parameter groups. (A layer norm feeding the loss gives
    # gradients near 0, where Adam's m / sqrt(v) amplifies any rounding: not used here.)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    config = TrainConfig(optimizer=optimizer, lr=1e-2, weight_decay=0.1)
    opt = build_optimizer(config, param_groups(model, config.weight_decay))
    assert all(group["fused"] for group in opt.param_groups)
    looped_model = copy.deepcopy(model)
    looped = build_optimizer(config, param_groups(looped_model, config.weight_decay))
    for group in looped.param_groups:  # torch's per-tensor loop, its default on a CPU
        group["fused"], group["foreach"] = False, False
    for _ in range(5):
        x, y = torch.randn(8, 16), torch.randn(8, 4)
        for m, o in ((model, opt), (looped_model, looped)):
            o.zero_grad()
            F.mse_loss(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), looped_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # measured: 3e-8 apart


def test_rmsprop_and_integer_parameters_keep_the_loop():
    model = torch.nn.Linear(4, 2)
    rmsprop = build_optimizer(TrainConfig(optimizer="rmsprop"), model.parameters())
    assert isinstance(rmsprop, torch.optim.RMSprop) and not rmsprop.defaults.get("fused")
    assert fused(list(model.parameters()))
    assert not fused([torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)])
    assert not fused([])


def test_warmup_then_cosine_schedule():
    f = [
        lr_factor(s, total_steps=100, warmup_steps=10, schedule="cosine", floor=0.1)
        for s in range(101)
    ]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[55] == pytest.approx(0.1 + 0.9 * 0.5)
    assert f[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def test_l1_l2_penalties_cover_weights_not_biases():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(-2.0)
        model.bias.fill_(100.0)
    assert weight_penalty(model, l1=0.0, l2=0.0) is None
    assert weight_penalty(model, l1=0.5, l2=0.0).item() == pytest.approx(0.5 * 12)
    assert weight_penalty(model, l1=0.0, l2=0.1).item() == pytest.approx(0.1 * 24)


def test_l2_penalty_shrinks_weights():
    def weight_norm(l2: float) -> float:
        config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, l2=l2, log_every=50)
        task = digits_task()
        Trainer(config, task, emit=quiet).fit()
        return sum(p.norm().item() ** 2 for p in task.model.parameters() if p.dim() > 1)

    assert weight_norm(0.05) < weight_norm(0.0)


def test_gradient_clipping_bounds_the_update():
    config = TrainConfig(epochs=1, batch_size=32, lr=1.0, optimizer="sgd", momentum=0.0,
                         grad_clip=1e-3, max_steps=1, log_every=1)  # fmt: skip
    task = digits_task(dropout=0.0)
    before = [p.detach().clone() for p in task.model.parameters()]
    Trainer(config, task, emit=quiet).fit()
    step_sq = sum((p.detach() - b).pow(2).sum().item()
                  for p, b in zip(task.model.parameters(), before, strict=True))  # fmt: skip
    assert math.sqrt(step_sq) <= 1e-3 * 1.001  # lr * clip


def test_early_stopping_stops_and_records_why():
    lines = []
    config = TrainConfig(
        epochs=30, batch_size=32, lr=1e-9, early_stopping_patience=2,
        early_stopping_metric="val:accuracy", early_stopping_mode="max",
        early_stopping_min_delta=0.5,
    )  # fmt: skip
    result = Trainer(config, digits_task(), emit=lines.append).fit()
    assert result.state.stopped_early and len(result.state.epochs) == 3
    assert any("early stopping after epoch 3" in line for line in lines)


def test_unknown_early_stopping_metric_names_what_exists():
    config = TrainConfig(epochs=2, batch_size=32, early_stopping_patience=1,
                         early_stopping_metric="val:acc")  # fmt: skip
    with pytest.raises(ConfigError, match="val:accuracy"):
        Trainer(config, digits_task(), emit=quiet).fit()


def test_bf16_autocast_and_activation_checkpointing_train():
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, bf16=True)
    result = Trainer(config, digits_task(activation_checkpointing=True), emit=quiet).fit()
    assert all(math.isfinite(x) for x in result.state.step_losses)
    assert result.state.epochs[-1]["train:loss"] < result.state.epochs[0]["train:loss"]


def test_language_model_reports_perplexity_and_carries_hidden_state():
    task = lm_task(cell="gru")
    config = TrainConfig(epochs=2, batch_size=8, lr=5e-3, grad_clip=1.0)
    result = Trainer(config, task, emit=quiet).fit()
    last = result.state.epochs[-1]
    assert last["val:perplexity"] == pytest.approx(math.exp(last["val:loss"]), rel=1e-5)
    assert last["val:perplexity"] < task.vocab_size  # better than uniform guessing
    assert task.hidden is not None and not task.hidden.requires_grad  # detached


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError) as info:
        TrainConfig(optimizer="lamb")
    assert info.value.field == "optimizer"
    with pytest.raises(ConfigError):
        TrainConfig(batch_size=0)


def test_rank_shards_union_to_the_single_process_batches():
    from sm_toolkit.runtime.distributed import DistInfo
    from sm_toolkit.train.task import chunk, shard_indices

    single = chunk(shard_indices(101, dist=DistInfo(), seed=3, epoch=2), 20)
    ranks = [
        chunk(shard_indices(101, dist=DistInfo(rank=r, world_size=2), seed=3, epoch=2), 10)
        for r in (0, 1)
    ]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 5
    for i, batch in enumerate(single):
        assert sorted(batch.tolist()) == sorted(ranks[0][i].tolist() + ranks[1][i].tolist())
    other_epoch = chunk(shard_indices(101, dist=DistInfo(), seed=3, epoch=3), 20)
    assert not torch.equal(single[0], other_epoch[0])  # reshuffled every epoch


def test_global_batch_must_split_evenly_over_processes():
    from sm_toolkit.runtime.distributed import DistInfo

    with pytest.raises(ConfigError, match="multiple of the 2 processes"):
        digits_task(batch_size=33, dist=DistInfo(rank=0, world_size=2))
