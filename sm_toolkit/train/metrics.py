"""Metric functions (scikit-learn underneath), the `[metrics]` line format and the JSON report.

Every metric a job reports is printed as `name=value` tokens on one line that starts with
`[metrics]`; SageMaker, the local runner and local tuning all read those lines with the
regex `N=([-+]?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

METRIC_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_regex(name: str) -> str:
    """The metric-definition regex for `name` (same form SageMaker's MetricDefinitions use)."""
    return f"{name}={METRIC_NUMBER}"


def format_value(value: float) -> str:
    """Fixed 5 decimals, or scientific for tiny values so they do not print as 0.00000."""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.5e}"
    return f"{value:.5f}"


def metrics_line(metrics: Mapping[str, float], **context: int) -> str:
    """`[metrics] epoch=3 step=120 train:loss=0.41230 ...` (non-finite values are left out)."""
    head = " ".join(f"{k}={v}" for k, v in context.items())
    body = " ".join(
        f"{name}={format_value(float(v))}" for name, v in metrics.items() if math.isfinite(v)
    )
    return f"[metrics] {head} {body}".replace("  ", " ").rstrip()


def specificity_per_class(cm: np.ndarray) -> np.ndarray:
    """TN / (TN + FP) for each class of a confusion matrix (rows = true, columns = predicted)."""
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    denom = tn + fp
    return np.divide(tn, denom, out=np.zeros_like(tn, dtype=float), where=denom > 0)


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, *, num_classes: int
) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1/specificity, one-vs-rest macro ROC-AUC and PR-AUC."""
    labels = np.arange(num_classes)
    y_pred = probs.argmax(axis=1)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(
            skm.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "recall": float(
            skm.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "specificity": float(specificity_per_class(cm).mean()),
    }
    present = np.unique(y_true)
    if len(present) == num_classes:  # AUCs are undefined when a class is missing
        onehot = np.eye(num_classes)[y_true]
        out["roc_auc"] = float(skm.roc_auc_score(onehot, probs, average="macro"))
        out["pr_auc"] = float(skm.average_precision_score(onehot, probs, average="macro"))
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> np.ndarray:
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R^2."""
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token), capped to stay finite."""
    return float(math.exp(min(mean_nll, 50.0)))


def unigram_baseline(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> dict:
    """Loss and perplexity of a unigram model fit on train (add-one smoothing) on val tokens."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    nll = float(-log_p[val_ids].mean())
    return {"loss": nll, "perplexity": perplexity(nll)}


def prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}:{k}": float(v) for k, v in values.items()}


def write_report(path: Path, report: Mapping[str, object]) -> Path:
    """metrics.json: plain JSON (numpy values turned into lists / floats)."""

    def default(obj: object) -> object:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=default) + "\n", encoding="utf-8")
    return path
