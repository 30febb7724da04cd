import pytest
import torch
from torch import nn

from sm_toolkit.errors import ConfigError
from sm_toolkit.models.rnn import CharRNN, RNNConfig, RowClassifier, build_rnn


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_lm_carries_hidden_state(cell):
    model = build_rnn(RNNConfig.debug(cell=cell, vocab_size=11, layers=2))
    assert isinstance(model, CharRNN) and isinstance(model.rnn, getattr(nn, cell.upper()))
    model.eval()
    idx = torch.randint(0, 11, (3, 10))
    full, _ = model(idx)
    first, hidden = model(idx[:, :4])
    second, _ = model(idx[:, 4:], hidden)
    # Feeding the sequence in two windows with the carried state equals one pass.
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)
    assert full.shape == (3, 10, 11)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_row_classifier_reads_rows(bidirectional):
    config = RNNConfig.debug(task="classify", cell="gru", bidirectional=bidirectional, layers=2)
    model = build_rnn(config)
    assert isinstance(model, RowClassifier)
    assert model.head.in_features == config.hidden * (2 if bidirectional else 1)
    logits = model(torch.rand(6, 1, 8, 8))
    assert logits.shape == (6, 10)
    logits.sum().backward()


def test_bidirectional_direction_order():
    """Forward direction's last state comes first, the backward one second."""
    torch.manual_seed(0)
    model = build_rnn(RNNConfig.debug(task="classify", cell="rnn", bidirectional=True, dropout=0))
    model.eval()
    x = torch.rand(2, 8, 8)
    out, _ = model.rnn(x)
    h = model.config.hidden
    expected = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=-1)
    assert torch.allclose(model(x), model.head(expected), atol=1e-6)


def test_activation_checkpointing_keeps_gradients():
    torch.manual_seed(0)
    a = build_rnn(RNNConfig.debug(vocab_size=7, dropout=0.0))
    b = build_rnn(RNNConfig.debug(vocab_size=7, dropout=0.0, activation_checkpointing=True))
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 7, (2, 6))
    a(idx)[0].sum().backward()
    b(idx)[0].sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"vocab_size": 5, "bidirectional": True}, "bidirectional"), ({"cell": "qrnn"}, "cell"),
     ({"task": "lm"}, "vocab_size"), ({"vocab_size": 5, "nonlinearity": "gelu"}, "nonlinearity")],
)  # fmt: skip
def test_bad_options_are_config_errors(options, field):
    with pytest.raises(ConfigError) as info:
        RNNConfig(**options)
    assert info.value.field == field
