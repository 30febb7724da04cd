"""What a finished local tuning job leaves behind: leaderboard (text, CSV, JSON) and plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Figure without pyplot: no global backend or figure registry, safe beside other threads.
from matplotlib.figure import Figure

from sm_toolkit.local.tuning.trials import TrialRecord

BASE_COLUMNS = ("rank", "trial", "status", "objective", "epochs", "seconds")


def leaderboard_rows(
    records: Sequence[TrialRecord], *, maximize: bool, param_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per trial, best first; trials without an objective last, in launch order."""
    scored = [r for r in records if r.objective is not None]
    unscored = [r for r in records if r.objective is None]
    # Completed trials rank above stopped ones: an early-stopped value is not a final one.
    scored.sort(key=lambda r: (r.status != "Completed", -r.objective if maximize else r.objective))
    rows = []
    for rank, rec in enumerate(scored + sorted(unscored, key=lambda r: r.index), start=1):
        row: dict[str, Any] = {
            "rank": rank,
            "trial": rec.name,
            "status": rec.status + (" (early stopped)" if rec.early_stopped else ""),
            "objective": rec.objective,
            "epochs": rec.epochs,
            "seconds": round(rec.seconds, 2),
        }
        row.update({name: rec.hyperparameters.get(name) for name in param_names})
        row["failure_reason"] = rec.failure_reason
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]], *, max_rows: int = 50) -> str:
    """A fixed-width text table of the leaderboard (failure reasons left to the CSV)."""
    if not rows:
        return "(no trials)"
    columns = [c for c in rows[0] if c != "failure_reason"]
    cells = [[_cell(row[c]) for c in columns] for row in rows[:max_rows]]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more in the CSV")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_leaderboard(rows: Sequence[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """leaderboard.csv and leaderboard.json in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "leaderboard.csv", out_dir / "leaderboard.json"
    fields = list(rows[0]) if rows else list(BASE_COLUMNS)
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(list(rows), indent=2, default=str) + "\n")
    return csv_path, json_path


def write_plots(
    records: Sequence[TrialRecord],
    out_dir: Path,
    *,
    objective_name: str,
    maximize: bool,
    param_names: Sequence[str],
    log_params: Sequence[str] = (),
) -> list[Path]:
    """PNG plots: objective by trial (with best so far), each parameter against the objective,
    and the per-epoch objective curves (where early stopping and Hyperband act)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        _plot_by_trial(records, out_dir, objective_name, maximize),
        _plot_curves(records, out_dir, objective_name),
    ]
    if param_names:
        paths.append(_plot_params(records, out_dir, objective_name, param_names, log_params))
    return paths


def _plot_by_trial(records, out_dir: Path, objective_name: str, maximize: bool) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ordered = sorted(records, key=lambda r: r.index)
    for status, marker in (("Completed", "o"), ("Stopped", "x")):
        pts = [
            (r.index, r.objective)
            for r in ordered
            if r.status == status and r.objective is not None
        ]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=status)
    best, xs, ys = None, [], []
    for rec in ordered:
        if rec.status == "Completed" and rec.objective is not None:
            if best is None or (rec.objective > best if maximize else rec.objective < best):
                best = rec.objective
        if best is not None:
            xs.append(rec.index)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", linewidth=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective_name)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, out_dir / "objective_by_trial.png")


def _plot_curves(records, out_dir: Path, objective_name: str) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for rec in records:
        if rec.intermediate:
            style = ":" if rec.status == "Stopped" else "-"
            epochs = range(1, len(rec.intermediate) + 1)
            ax.plot(epochs, rec.intermediate, style, linewidth=1, alpha=0.8)
    ax.set_xlabel("epoch (objective value printed)")
    ax.set_ylabel(objective_name)
    ax.set_title("per-epoch objective (dotted: stopped)")
    return _save(fig, out_dir / "objective_curves.png")


def _plot_params(records, out_dir, objective_name, param_names, log_params) -> Path:
    n = len(param_names)
    fig = Figure(figsize=(4 * n, 3.5))
    axes = fig.subplots(1, n, squeeze=False)
    scored = [r for r in records if r.objective is not None]
    for ax, name in zip(axes[0], param_names, strict=True):
        xs = [r.hyperparameters.get(name) for r in scored]
        ys = [r.objective for r in scored]
        if any(isinstance(x, (str, bool)) for x in xs):
            labels = sorted({str(x) for x in xs})
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        elif name in log_params:
            ax.set_xscale("log")
        ax.scatter(xs, ys, s=14)
        ax.set_xlabel(name)
        ax.set_ylabel(objective_name)
    return _save(fig, out_dir / "params_vs_objective.png")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
