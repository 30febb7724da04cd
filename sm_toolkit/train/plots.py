"""PNG figures for the output folder (matplotlib, Agg backend: no display in a container)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # set here, not at import time, so importing this module is inert
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def loss_curves(
    step_losses: Sequence[float], epochs: Sequence[Mapping[str, float]], path: Path
) -> Path:
    """Per-step training loss (faint), its moving average, and per-epoch val loss."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(step_losses) + 1)
    ax.plot(steps, step_losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (step)")
    if len(step_losses) >= 10:
        w = max(5, len(step_losses) // 50)
        smooth = np.convolve(step_losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="tab:blue", lw=1.6, label=f"train (mean of {w})")
    val = [(e["step"], e["val:loss"]) for e in epochs if "val:loss" in e]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", color="tab:orange", label="val (epoch)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def confusion_matrix_plot(cm: np.ndarray, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            color = "white" if v > cm.max() / 2 else "black"
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {np.trace(cm) / max(1, cm.sum()):.3f})")
    return _save(fig, path)


def roc_pr_plot(y_true: np.ndarray, probs: np.ndarray, path: Path) -> Path:
    """One-vs-rest ROC and precision-recall curves, one line per class."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    cmap = plt.get_cmap("tab10")
    for k in range(probs.shape[1]):
        pos = y_true == k
        if not pos.any() or pos.all():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, k])
        prec, rec, _ = precision_recall_curve(pos, probs[:, k])
        ax1.plot(fpr, tpr, color=cmap(k % 10), lw=1, label=f"{k} ({auc(fpr, tpr):.3f})")
        ax2.plot(rec, prec, color=cmap(k % 10), lw=1, label=str(k))
    ax1.plot([0, 1], [0, 1], "k--", lw=0.7)
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one-vs-rest)")
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall (one-vs-rest)")
    ax1.legend(fontsize=7, title="class (AUC)", title_fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def gradient_flow_plot(
    mean_abs: Mapping[str, Sequence[float]], path: Path, *, title: str = "Gradient flow"
) -> Path:
    """Mean |grad| per layer (input to output) on a log axis: early, middle and late training."""
    plt = _plt()
    names = [n for n, v in mean_abs.items() if len(v)]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 4.2))
    if names:
        series = np.array([mean_abs[n] for n in names])  # (layers, samples)
        x = np.arange(len(names))
        picks = sorted({0, series.shape[1] // 2, series.shape[1] - 1})
        labels = {0: "start", series.shape[1] // 2: "middle", series.shape[1] - 1: "end"}
        for p in picks:
            ax.plot(x, np.maximum(series[:, p], 1e-12), "o-", label=labels[p])
        ax.plot(x, np.maximum(series.mean(axis=1), 1e-12), "k--", lw=1, label="mean")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.legend()
    ax.set_ylabel("mean |gradient|")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def gradient_flow_compare(curves: Mapping[str, Sequence[float]], layers: Sequence[str], path: Path):
    """One line per run (e.g. per activation): mean |grad| per layer over training."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(layers) + 2), 4.2))
    x = np.arange(len(layers))
    for label, values in curves.items():
        ax.plot(x, np.maximum(values, 1e-12), "o-", label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("mean |gradient| over training")
    ax.set_title("Gradient flow by activation (input layer on the left)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def expert_utilisation_plot(tokens_per_expert: Sequence[Sequence[float]], path: Path) -> Path:
    """Share of routed tokens per expert, one group of bars per MoE layer."""
    plt = _plt()
    counts = np.asarray(tokens_per_expert, dtype=float)  # (layers, experts)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n_layers, n_experts = shares.shape
    fig, ax = plt.subplots(figsize=(max(6, n_layers * n_experts * 0.3 + 2), 4))
    width = 0.8 / n_experts
    for e in range(n_experts):
        ax.bar(np.arange(n_layers) + e * width, shares[:, e], width, label=f"expert {e}")
    ax.axhline(1 / n_experts, color="k", ls="--", lw=1, label="uniform")
    ax.set_xticks(np.arange(n_layers) + 0.4 - width / 2)
    ax.set_xticklabels([f"MoE layer {i}" for i in range(n_layers)])
    ax.set_ylabel("share of routed tokens")
    ax.set_title("Expert utilisation (validation)")
    ax.set_ylim(0, shares.max() * 1.35)  # room for the legend above the bars
    ax.legend(fontsize=7, ncol=min(n_experts + 1, 5), loc="upper center")
    return _save(fig, path)
