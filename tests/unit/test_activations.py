import pytest
import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.activations import (
    ACTIVATIONS,
    Maxout,
    Swish,
    make_activation,
    make_output_activation,
)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n != "maxout"])
def test_every_activation_keeps_shape_and_backprops(name):
    act = make_activation(name)
    x = torch.randn(4, 6, requires_grad=True)
    y = act(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_torch_modules_are_used_where_they_exist():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert make_activation("leaky_relu", alpha=0.2).negative_slope == 0.2
    assert make_activation("elu", alpha=0.5).alpha == 0.5
    assert make_activation("gelu", approximate="tanh").approximate == "tanh"
    prelu = make_activation("prelu", alpha=0.1)
    assert isinstance(prelu, nn.PReLU) and len(list(prelu.parameters())) == 1


def test_swish_beta_one_is_silu_and_beta_changes_the_curve():
    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(make_activation("swish")(x), nn.functional.silu(x))
    y2 = make_activation("swish", beta=2.0)(x)
    assert torch.allclose(y2, x * torch.sigmoid(2.0 * x))
    assert not torch.allclose(y2, nn.functional.silu(x))


def test_learnable_swish_beta_gets_a_gradient():
    act = Swish(beta=1.5, learnable=True)
    act(torch.randn(10)).sum().backward()
    assert act.beta.grad is not None


def test_maxout_takes_max_over_k_consecutive_channels():
    x = torch.tensor([[1.0, 5.0, -2.0, 3.0, 0.0, 4.0]])
    assert torch.equal(Maxout(k=2)(x), torch.tensor([[5.0, 3.0, 4.0]]))
    assert torch.equal(Maxout(k=3)(x), torch.tensor([[5.0, 4.0]]))
    img = torch.randn(2, 8, 3, 3)
    assert make_activation("maxout", k=4)(img).shape == (2, 2, 3, 3)


def test_maxout_rejects_feature_count_not_multiple_of_k():
    with pytest.raises(ValueError, match="multiple of k=3"):
        Maxout(k=3)(torch.randn(2, 4))


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("nope", {}, "activation"),
        ("elu", {"alpha": -1}, "activation elu.alpha"),
        ("maxout", {"k": 1}, "activation maxout.k"),
        ("gelu", {"approximate": "fast"}, "activation gelu.approximate"),
        ("relu", {"alpha": 0.1}, "activation relu parameters"),
    ],
)
def test_bad_name_or_parameter_is_a_config_error(name, params, field):
    with pytest.raises(ConfigError) as info:
        make_activation(name, **params)
    assert info.value.field == field


def test_output_activations():
    logits = torch.randn(3, 5)
    probs = make_output_activation("softmax")(logits)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert ((make_output_activation("sigmoid")(logits) > 0) & (probs < 1)).all()
    with pytest.raises(ConfigError):
        make_output_activation("relu")
