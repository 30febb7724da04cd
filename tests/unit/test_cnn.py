import pytest
import torch

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.cnn import CNN, CNNConfig


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batch_norm": False, "residual": True, "depth": 4},
        {"activation": "maxout", "activation_params": {"k": 3}},
        {"activation": "leaky_relu", "activation_params": {"alpha": 0.2}, "pool": "avg"},
    ],
)
def test_cnn_variants_give_logits_and_gradients(options):
    model = CNN(CNNConfig.debug(**options))
    logits = model(torch.rand(5, 1, 8, 8))
    assert logits.shape == (5, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_depth_and_residual_change_the_structure():
    plain = CNN(CNNConfig.debug(depth=5, residual=False))
    skip = CNN(CNNConfig.debug(depth=5, residual=True))
    assert len(plain.blocks) == 5
    assert not any(b.residual for b in plain.blocks)
    assert [b.residual for b in skip.blocks] == [False, True, True, True, True]


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = CNN(CNNConfig.debug(depth=3, dropout=0.0, batch_norm=False))
    b = CNN(CNNConfig.debug(depth=3, dropout=0.0, batch_norm=False, activation_checkpointing=True))
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 1, 8, 8)
    a(x).square().sum().backward()
    b(x).square().sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"depth": 0}, "depth"), ({"kernel_size": 4}, "kernel_size"), ({"dropout": 1.0}, "dropout"),
     ({"activation": "softsign"}, "activation"), ({"pool": "l2"}, "pool")],
)  # fmt: skip
def test_bad_options_are_config_errors(options, field):
    with pytest.raises(ConfigError) as info:
        CNNConfig(**options)
    assert info.value.field == field
