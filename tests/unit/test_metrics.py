import math
import re

import numpy as np
import pytest

from sm_toolkit.train import metrics as M


def test_metrics_line_values_are_read_back_by_the_metric_regex():
    values = {
        "train:loss": 0.4123,
        "val:loss": 0.38,
        "val:accuracy": 0.9612,
        "train:aux_loss": 3e-5,
    }
    line = M.metrics_line(values, epoch=3, step=120)
    assert line.startswith("[metrics] epoch=3 step=120 train:loss=0.41230")
    for name, value in values.items():
        found = re.findall(M.metric_regex(name), line)
        assert len(found) == 1 and float(found[0]) == pytest.approx(value, rel=1e-4)


def test_non_finite_values_are_left_out():
    assert "val:loss" not in M.metrics_line({"val:loss": float("nan"), "x": 1.0}, epoch=1)


def test_classification_metrics_match_a_hand_count():
    # 3 classes; predictions from argmax of probs
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    out = M.classification_metrics(y, probs, num_classes=3)
    assert out["accuracy"] == pytest.approx(4 / 6)
    # precision per class: 1/2, 2/3, 1/1 ; recall: 1/2, 2/2, 1/2
    assert out["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert out["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # specificity per class: TN/(TN+FP): c0: 3/4, c1: 3/4, c2: 4/4
    assert out["specificity"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)
    assert 0.5 < out["roc_auc"] <= 1.0 and 0.0 < out["pr_auc"] <= 1.0


def test_perfect_scores_give_auc_one():
    y = np.array([0, 1, 2, 0, 1, 2])
    out = M.classification_metrics(y, np.eye(3)[y], num_classes=3)
    assert out["accuracy"] == out["roc_auc"] == out["pr_auc"] == out["f1"] == 1.0


def test_specificity_from_confusion_matrix():
    # rows true, columns predicted. Class 1: TN=5, FP=1 -> 5/6; class 0: TN=4, FP=2 -> 4/6
    cm = np.array([[5, 1], [2, 4]])
    spec = M.specificity_per_class(cm)
    assert spec[1] == pytest.approx(5 / 6) and spec[0] == pytest.approx(4 / 6)


def test_regression_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    yhat = np.array([1.5, 2.0, 2.0, 4.0])
    out = M.regression_metrics(y, yhat)
    assert out["mae"] == pytest.approx(0.375)
    assert out["rmse"] == pytest.approx(math.sqrt((0.25 + 1.0) / 4))
    assert out["r2"] == pytest.approx(1 - 1.25 / 5.0)


def test_perplexity_and_unigram_baseline():
    assert M.perplexity(math.log(7.0)) == pytest.approx(7.0)
    train = np.array([0, 0, 1, 1])  # add-one smoothed: p = 3/6, 3/6, 1/6
    val = np.array([0, 2])
    base = M.unigram_baseline(train, val, vocab_size=3)
    expected = -(math.log(3 / 7) + math.log(1 / 7)) / 2
    assert base["loss"] == pytest.approx(expected)
    assert base["perplexity"] == pytest.approx(math.exp(expected))
