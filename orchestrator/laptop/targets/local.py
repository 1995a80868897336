"""Run one sweep on the local backend, tracked in MLflow, with a live view.

Everything is validated before this module writes anything; from here on the
sweep's parent run is always closed, whatever happens to the trials.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from cluster.adaptors.git import code_version
from cluster.node.local import local_ray
from orchestrator.kernel import tracking_layout as layout
from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.config.models import LocalProfile
from orchestrator.kernel.config.resources import MachineResources
from orchestrator.kernel.config.search_space import flatten
from orchestrator.kernel.states import RunStatus
from orchestrator.laptop.progress import SweepProgress
from orchestrator.laptop.state import LocalState
from orchestrator.laptop.tracking_uri import TrackingTarget
from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.sweep_run import open_sweep_run
from trainables import runtime


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    experiment_id: str
    parent_run_id: str
    tracking: TrackingTarget
    rows: list[dict[str, Any]]
    varying: list[str]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] != RunStatus.FINISHED]

    @property
    def never_started(self) -> bool:
        """Every trial failed before its first result: the trainable itself cannot start (setup, import, a bad config)."""
        return bool(self.rows) and all(row["status"] == RunStatus.FAILED and not row["reported"] for row in self.rows)

    @property
    def best(self) -> dict[str, Any] | None:
        finished = [row for row in self.rows if row["status"] == RunStatus.FINISHED and row.get("metric") is not None]
        return finished[0] if finished else None


def new_sweep_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_sweep(
    resolved: ResolvedSweep,
    cluster: LocalProfile,
    resources: MachineResources,
    concurrency: int,
    state: LocalState,
    target: TrackingTarget,
    console: Console,
) -> SweepOutcome:
    from cluster.node.experiment import ExperimentPlan, build_tuner
    from orchestrator.tracking.tune_callback import MLflowTrialTracker

    sweep, project = resolved.sweep, resolved.project
    sweep_id = new_sweep_id(sweep.name)
    client = TrackingClient(target.uri, target.artifact_root)
    code = code_version(resolved.file.parent)
    identity = layout.SweepIdentity(sweep_id, sweep.name, project.name, project.runs, code.commit, code.dirty, cluster.name)
    parent_run_id, experiment_id = open_sweep_run(
        client, resolved, identity, concurrency, diff=code.diff, untracked=code.untracked
    )
    base_tags = layout.sweep_tags(identity)

    from orchestrator.laptop.tracking_server import recorded_artifacts_destination, tracking_dir

    varying = resolved.space.sampled_paths()
    ledger = state.run_ledger(sweep_id)
    tracker = MLflowTrialTracker(
        client,
        experiment_id,
        parent_run_id,
        base_tags,
        sweep.name,
        ledger_path=ledger,
        spool_dir=tracking_dir(state) / "spool",
        artifacts_destination=recorded_artifacts_destination(state, target.uri),
    )
    # What the trials' processes (Ray workers, a command's script) read: where the run ledger is, which
    # MLflow store their runs are in (a command's own mlflow logging), the workspace (trainables.runtime).
    os.environ[runtime.RUN_LEDGER_ENV] = str(ledger)
    os.environ["MLFLOW_TRACKING_URI"] = target.uri
    os.environ[runtime.WORKSPACE_ENV] = str(resolved.workspace)
    progress = SweepProgress(sweep_id, sweep.metric, sweep.mode, varying, console)
    plan = ExperimentPlan(sweep_id, resolved, state.ray_results_dir, concurrency)
    console.print(
        f"sweep [bold]{sweep_id}[/]: {resolved.num_trials} trials of {project.runs} "
        f"({concurrency} at a time) on cluster '{cluster.name}', code {code.short}"
    )
    try:
        with local_ray(resources), progress:
            grid = build_tuner(plan, [tracker, progress]).fit()
    except BaseException:
        tracker.close(timeout_s=10.0)
        tracker.close_unfinished(RunStatus.KILLED)
        client.end_run(parent_run_id, RunStatus.KILLED)
        raise
    tracker.close()
    tracker.close_unfinished(RunStatus.FAILED)

    rows = _result_rows(grid, sweep.metric, sweep.mode, tracker)
    outcome = SweepOutcome(sweep_id, experiment_id, parent_run_id, target, rows, varying)
    _log_summary(client, outcome, sweep.metric)
    try:
        _log_summary_pictures(client, outcome, sweep.metric, grid)
    except Exception as exc:  # pictures are a convenience: never fail a finished sweep over them
        console.print(f"[yellow]warning:[/] summary pictures not recorded: {str(exc)[:200]}", highlight=False)
    client.end_run(parent_run_id, RunStatus.FAILED if outcome.failed else RunStatus.FINISHED)
    return outcome


def _result_rows(grid: Any, metric: str, mode: str, tracker: Any) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        value = metrics.get(metric)
        rows.append(
            {
                "trial_id": trial_id,
                "status": RunStatus.FAILED if result.error else RunStatus.FINISHED,
                "epoch": metrics.get("epoch", metrics.get("training_iteration")),
                "metric": float(value) if isinstance(value, (int, float)) else None,
                "params": flatten(dict(result.config or {})),
                "run_id": tracker.run_ids.get(trial_id),
                "error": _last_line(result.error) if result.error else None,
                "reported": "training_iteration" in (result.metrics or {}),
            }
        )
    sign = 1.0 if mode == "min" else -1.0
    rows.sort(key=lambda r: (r["status"] != RunStatus.FINISHED, r["metric"] is None, sign * (r["metric"] or 0.0)))
    return rows


def _last_line(error: BaseException) -> str:
    """The line of a trial's error that says what went wrong (Tune wraps the trainable's own exception)."""
    lines = [line.strip() for line in str(getattr(error, "cause", None) or error).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


def _log_summary(client: TrackingClient, outcome: SweepOutcome, metric: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial_id", "status", "epoch", *outcome.varying, metric, "run_id"])
    for rank, row in enumerate(outcome.rows, start=1):
        writer.writerow(
            [
                rank,
                row["trial_id"],
                row["status"],
                row["epoch"],
                *(row["params"].get(k) for k in outcome.varying),
                row["metric"],
                row["run_id"],
            ]
        )
    client.log_text(outcome.parent_run_id, buffer.getvalue(), "summary/results.csv")
    best = outcome.best
    counts = {"trials_finished": float(len(outcome.rows) - len(outcome.failed)), "trials_failed": float(len(outcome.failed))}
    if best is not None:
        counts[f"best_{metric}"] = best["metric"]
        client.set_tags(
            outcome.parent_run_id, {layout.TAG_BEST_TRIAL: best["trial_id"], layout.TAG_BEST_RUN: best["run_id"] or ""}
        )
        client.log_text(outcome.parent_run_id, yaml.safe_dump(best["params"], sort_keys=True), "summary/best_config.yaml")
    client.log_metrics(outcome.parent_run_id, counts, step=0)


def _log_summary_pictures(client: TrackingClient, outcome: SweepOutcome, metric: str, grid: Any) -> None:
    """Metric vs each varied hyperparameter and the learning curves of all trials, on the parent run."""
    import tempfile

    from orchestrator.tracking import summary

    with tempfile.TemporaryDirectory(prefix="orch-summary-") as folder:
        out = Path(folder)
        summary.metric_vs_params(outcome.rows, outcome.varying, metric, out)
        summary.learning_curves(summary.curves_from_results(grid, metric), metric, out)
        if any(out.iterdir()):
            client.log_artifacts(outcome.parent_run_id, out, "summary")
