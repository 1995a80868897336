"""`orch compare SWEEP`: the trials of one sweep side by side in the terminal.

Reads the run layout (`tracking.layout`): the sweep's parent run names the metric
and mode; its child runs are sorted by the metric's last value; only the
hyperparameters that differ between trials are shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from orchestrator.kernel import tracking_layout as layout
from orchestrator.kernel.errors import OrchError


@dataclass
class SweepComparison:
    sweep_id: str
    experiment_id: str
    parent_run_id: str
    metric: str
    mode: str
    differing: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    all_params: list[str] = field(default_factory=list)  # every hyperparameter any trial logged


def load_comparison(tracking_uri: str, sweep_id: str, metric: str | None = None) -> SweepComparison:
    from orchestrator.tracking.client import TrackingClient

    runs = TrackingClient(tracking_uri).search_runs(None, {layout.TAG_SWEEP_ID: sweep_id.replace("'", "").replace("`", "")})
    parents = [r for r in runs if r.tags.get(layout.TAG_KIND) == layout.KIND_SWEEP]
    trials = [r for r in runs if r.tags.get(layout.TAG_KIND) == layout.KIND_TRIAL]
    if not parents and not trials:
        raise OrchError(f"no sweep '{sweep_id}' in MLflow at {tracking_uri}; sweep ids are printed by orch run / orch submit")
    parent = parents[0] if parents else None
    metric = metric or (parent.params.get("metric") if parent else None)
    if not metric:
        raise OrchError(f"sweep '{sweep_id}' names no metric; pass --metric")
    mode = parent.params.get("mode", "min") if parent else "min"
    params = [r.params for r in trials]
    keys = sorted({k for p in params for k in p})
    differing = [k for k in keys if len({p.get(k) for p in params}) > 1]
    rows: list[dict[str, Any]] = [
        {
            "trial_id": r.tags.get(layout.TAG_TRIAL_ID, r.name),
            "status": r.status.value,
            "metric": r.metrics.get(metric),
            "params": {k: r.params.get(k) for k in differing},
            "all_params": dict(r.params),
            "metrics": dict(r.metrics),
            "run_id": r.run_id,
            "steps": None,
        }
        for r in trials
    ]
    sign = 1.0 if mode == "min" else -1.0
    rows.sort(key=lambda row: (row["metric"] is None, sign * float(row["metric"] or 0.0)))
    experiment_id = (parent or trials[0]).experiment_id
    return SweepComparison(sweep_id, experiment_id, parent.run_id if parent else "", metric, mode, differing, rows, keys)


def comparison_table(comparison: SweepComparison) -> Any:
    from rich.table import Table

    arrow = "↓" if comparison.mode == "min" else "↑"
    table = Table(title=f"sweep {comparison.sweep_id}: {len(comparison.rows)} trials by {comparison.metric} {arrow}")
    table.add_column("rank", justify="right")
    table.add_column("trial")
    table.add_column("status")
    for key in comparison.differing:
        table.add_column(key, justify="right")
    table.add_column(comparison.metric, justify="right", style="bold")
    table.add_column("run id", style="dim")
    for rank, row in enumerate(comparison.rows, start=1):
        value = "-" if row["metric"] is None else f"{row['metric']:.6g}"
        table.add_row(
            str(rank),
            str(row["trial_id"]),
            row["status"],
            *(_short(row["params"][k]) for k in comparison.differing),
            value,
            row["run_id"],
        )
    return table


def _short(value: Any) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)[:40]
    return str(value) if str(value).lstrip("-").isdigit() else f"{number:.4g}"


def experiment_url(ui_base: str, experiment_id: str) -> str:
    """The MLflow UI page of one experiment (the UI's hash routes), on its runs rather than the GenAI overview."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def compare_runs_url(ui_base: str, experiment_id: str, run_ids: list[str]) -> str:
    from urllib.parse import quote

    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{ui_base.rstrip('/')}/#/compare-runs?runs={runs}&experiments={experiments}"


def sweep_experiment_id(tracking_uri: str, sweep_id: str) -> str:
    """The experiment holding a sweep (for `orch ui SWEEP`)."""
    return load_comparison(tracking_uri, sweep_id, metric="-").experiment_id
