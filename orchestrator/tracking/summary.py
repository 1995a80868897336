"""The pictures a sweep's parent run shows when the sweep ends (matplotlib, Agg, PNG).

- `summary/<metric>_vs_<param>.png`: the final metric of every trial against each
  hyperparameter the sweep varied (log axis for log-spaced numbers, categories as-is);
- `summary/learning_curves.png`: the metric per epoch of every trial.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _numeric(values: Sequence[Any]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def metric_vs_params(rows: Sequence[Mapping[str, Any]], varying: Sequence[str], metric: str, out_dir: Path) -> list[Path]:
    """One scatter plot per varied hyperparameter; rows are the runner's result rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row.get("metric") is not None]
    written = []
    for param in varying:
        values = [row["params"].get(param) for row in done]
        if not done:
            break
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
        numbers = _numeric(values)
        metrics = [row["metric"] for row in done]
        if numbers is not None:
            ax.scatter(numbers, metrics, s=36)
            positive = all(v > 0 for v in numbers)
            if positive and max(numbers) / min(numbers) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            ax.scatter([labels.index(str(v)) for v in values], metrics, s=36)
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        for row, x in zip(
            done, numbers if numbers is not None else [sorted({str(v) for v in values}).index(str(v)) for v in values]
        ):
            ax.annotate(str(row["trial_id"])[-5:], (x, row["metric"]), fontsize=7, alpha=0.7)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {param}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{_safe(metric)}_vs_{_safe(param)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def learning_curves(curves: Mapping[str, Sequence[tuple[int, float]]], metric: str, out_dir: Path) -> Path | None:
    """All trials' (step, value) series on one plot."""
    if not any(curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for trial_id, points in sorted(curves.items()):
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, marker="o", markersize=3, label=trial_id)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: learning curves of all trials")
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "learning_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_from_results(grid: Any, metric: str, step_key: str = "epoch") -> dict[str, list[tuple[int, float]]]:
    """(step, metric) per trial from Ray Tune's local results (no tracking server needed)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for result in grid:
        frame = getattr(result, "metrics_dataframe", None)
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        if frame is None or metric not in frame.columns:
            continue
        steps = frame[step_key] if step_key in frame.columns else frame["training_iteration"]
        curves[str(trial_id)] = [(int(s), float(v)) for s, v in zip(steps, frame[metric]) if v == v]
    return curves
