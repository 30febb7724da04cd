"""Hyperparameters arrive as sagemaker-training passes them: strings, `True`/`False`,
dicts as `k=v,k2=v2`; underscores or dashes."""

import numpy as np
import pytest

from sm_toolkit.errors import ConfigError
from sm_toolkit.train import datasets
from sm_toolkit.train.hparams import Parser, add_train_args, parse_params, train_config


def parser() -> Parser:
    p = Parser("t.py", "test")
    p.add("batch_norm", bool, True, "flag")
    p.add("activation_params", parse_params, {}, "dict")
    add_train_args(p, defaults={"epochs": 7})
    return p


@pytest.mark.parametrize(
    ("raw", "value"),
    [("True", True), ("False", False), ("true", True), ("false", False), ("1", True), ("0", False)],
)
def test_booleans_in_every_spelling(raw, value):
    assert parser().parse(["--batch_norm", raw]).batch_norm is value


def test_underscore_and_dash_names_and_entrypoint_defaults():
    ns = parser().parse(["--checkpoint-every", "50", "--early_stopping_patience", "3"])
    config = train_config(ns)
    assert config.checkpoint_every == 50 and config.early_stopping_patience == 3
    assert config.epochs == 7  # the entrypoint's default, not TrainConfig's


def test_dict_values_use_the_sagemaker_encoding():
    ns = parser().parse(["--activation_params", "alpha=0.2,k=3,learnable=True,kind=x"])
    assert ns.activation_params == {"alpha": 0.2, "k": 3, "learnable": True, "kind": "x"}


@pytest.mark.parametrize(
    ("argv", "field", "allowed"),
    [(["--epochs", "two"], "epochs", "int"), (["--optimizer", "lamb"], "optimizer", "adamw"),
     (["--bf16", "maybe"], "bf16", "True or False"),
     (["--hidden_size", "3"], "hyperparameter", "known: "),
    (["--batchsize", "64"], "hyperparameter", "did you mean batch_size"),
    (["--lr_rate", "3"], "hyperparameter", " or lr? "),
     (["--activation_params", "alpha"], "activation_params", "key=value")],
)  # fmt: skip
def test_bad_values_are_one_line_config_errors(argv, field, allowed):
    with pytest.raises(ConfigError) as info:
        train_config(parser().parse(argv))
    assert info.value.field == field and allowed in str(info.value)


def test_channel_files_round_trip(tmp_path):
    npz = datasets.write_digits_npz(tmp_path / "digits")
    assert npz.name == "digits.npz"
    images, labels = datasets.load_digits_arrays(npz.parent)
    assert images.dtype == np.float32 and images.shape[1:] == (8, 8) and images.max() == 16
    assert labels.dtype == np.int64 and len(labels) == len(images) == 1797
    text_file = datasets.write_text_corpus(tmp_path / "text")
    assert text_file.name == "corpus.txt"
    assert datasets.load_text(text_file.parent) == datasets.builtin_text()
    with pytest.raises(ConfigError, match="digits.npz"):
        datasets.load_digits_arrays(tmp_path / "text")


def test_digit_splits_are_stratified_and_disjoint():
    images, labels = datasets.builtin_digits()
    splits = datasets.digits_splits(images, labels)
    sizes = {k: len(v.y) for k, v in splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["val"] == sizes["test"] == 270
    assert float(splits["train"].x.max()) == 1.0  # scaled from 0..16
    for split in splits.values():
        assert len(np.unique(split.y.numpy())) == 10
