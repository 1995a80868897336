"""Run one sweep on the local backend, tracked in MLflow, with a live view.

Everything is validated before this module writes anything; from here on the
sweep's parent run is always closed, whatever happens to the trials.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console

from cluster.adaptors.git import code_version
from cluster.node.local import local_ray
from orchestrator.kernel import tracking_layout as layout
from orchestrator.kernel.config.loading import ResolvedSweep, sweep_files_hash
from orchestrator.kernel.config.models import LocalProfile
from orchestrator.kernel.config.resources import MachineResources
from orchestrator.kernel.config.search_space import flatten
from orchestrator.kernel.errors import ConfigError, SweepInterruptedError, UsageError
from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import RunStatus
from orchestrator.kernel.sweep_id import new_sweep_id
from orchestrator.laptop.progress import SweepProgress
from orchestrator.laptop.state import LocalState
from orchestrator.laptop.tracking_uri import TrackingTarget
from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.sweep_run import open_sweep_run
from orchestrator.tracking.tune_callback import error_line
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
        return [row for row in self.rows if row["status"] == RunStatus.FAILED]

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """Trials stopped before their end (the sweep was interrupted): `orch resume` continues them."""
        return [row for row in self.rows if row["status"] == RunStatus.KILLED]

    @property
    def never_started(self) -> bool:
        """Every trial failed before its first result: the trainable itself cannot start (setup, import, a bad config)."""
        return bool(self.rows) and all(row["status"] == RunStatus.FAILED and not row["reported"] for row in self.rows)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best finished trial; none for an interrupted sweep (its ranking is not final)."""
        if self.unfinished:
            return None
        finished = [row for row in self.rows if row["status"] == RunStatus.FINISHED and row.get("metric") is not None]
        return finished[0] if finished else None


class LocalSweepRecord(BaseModel):
    """What `orch resume` needs to continue a local sweep in the same MLflow runs (`.orch/sweeps/<id>/sweep.json`)."""

    sweep_id: str
    sweep_file: str
    config_hash: str  # of the sweep file and its project file as they ran
    cluster: str
    tracking_uri: str
    tracking_source: str
    artifact_root: str | None
    experiment_id: str
    parent_run_id: str
    concurrency: int
    pid: int  # the `orch run` (or `orch resume`) process driving it


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
    record = LocalSweepRecord(
        sweep_id=sweep_id,
        sweep_file=str(Path(resolved.file).resolve()),
        config_hash=sweep_files_hash(resolved),
        cluster=cluster.name,
        tracking_uri=target.uri,
        tracking_source=target.source,
        artifact_root=target.artifact_root,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        concurrency=concurrency,
        pid=os.getpid(),
    )
    write_atomic(state.sweep_record(sweep_id), record.model_dump_json(indent=1))

    from orchestrator.laptop.tracking_server import recorded_artifacts_destination, tracking_dir

    varying = resolved.space.sampled_paths()
    tracker = MLflowTrialTracker(
        client,
        experiment_id,
        parent_run_id,
        base_tags,
        sweep.name,
        ledger_path=state.run_ledger(sweep_id),
        spool_dir=tracking_dir(state) / "spool",
        artifacts_destination=recorded_artifacts_destination(state, target.uri),
    )
    progress = SweepProgress(sweep_id, sweep.metric, sweep.mode, varying, console)
    plan = ExperimentPlan(sweep_id, resolved, state.ray_results_dir, concurrency)
    console.print(
        f"sweep [bold]{sweep_id}[/]: {resolved.num_trials} trials of {project.runs} "
        f"({concurrency} at a time) on cluster '{cluster.name}', code {code.short}"
    )
    return _fit(record, resolved, resources, state, target, lambda: build_tuner(plan, [tracker, progress]))


def read_record(state: LocalState, sweep_id: str) -> LocalSweepRecord | None:
    path = state.sweep_record(sweep_id)
    if not path.exists():
        return None
    return LocalSweepRecord.model_validate_json(path.read_text())


def resume_sweep(
    record: LocalSweepRecord, resources: MachineResources, state: LocalState, force: bool, console: Console
) -> SweepOutcome:
    """Continue an interrupted local sweep: Tune restores its experiment (finished trials stay finished, the
    unfinished and failed ones continue from their last checkpoints) and each trial goes on in its own MLflow
    run, its steps logged once. Refused while its `orch run` is alive, and when its files changed (without --force)."""
    from cluster.node.experiment import ExperimentPlan, restorable, restore_tuner
    from orchestrator.kernel.config.loading import load_sweep
    from orchestrator.laptop.tracking_uri import check_reachable

    if _driving(record.pid):
        raise UsageError(
            f"sweep {record.sweep_id} is still running (orch process {record.pid}); fix: wait for it, or stop it with Ctrl-C"
        )
    resolved = load_sweep(Path(record.sweep_file))
    if sweep_files_hash(resolved) != record.config_hash and not force:
        raise UsageError(
            f"{record.sweep_file} or its project file changed since sweep {record.sweep_id} ran; fix: resume it with the "
            "changed files with --force, or run the changed sweep as a new one"
        )
    experiment = state.ray_results_dir / record.sweep_id
    if not restorable(experiment):
        raise UsageError(f"sweep {record.sweep_id} left no experiment state in {experiment}; fix: run it again as a new sweep")
    target = TrackingTarget(
        record.tracking_uri,
        record.artifact_root,
        embedded=record.tracking_uri == state.tracking_uri,
        source=record.tracking_source,
    )
    check_reachable(target)
    client = TrackingClient(target.uri, target.artifact_root)
    if client.run_status(record.parent_run_id) == RunStatus.FINISHED:
        raise UsageError(
            f"sweep {record.sweep_id} ran to its end, nothing to resume; fix: see its runs with orch ui, or run it again as a new sweep"
        )
    record = record.model_copy(update={"pid": os.getpid()})
    write_atomic(state.sweep_record(record.sweep_id), record.model_dump_json(indent=1))
    client.reopen_run(record.parent_run_id)
    plan = ExperimentPlan(record.sweep_id, resolved, state.ray_results_dir, record.concurrency)
    console.print(f"resuming sweep [bold]{record.sweep_id}[/]: unfinished and failed trials continue from their checkpoints")
    return _fit(record, resolved, resources, state, target, lambda: restore_tuner(plan, experiment), console=console)


def interrupted_line(sweep_id: str, unfinished: int | None = None, trials: int | None = None) -> str:
    counted = f": {unfinished} of {trials} trials unfinished, their runs KILLED" if unfinished is not None else ""
    return f"sweep {sweep_id} interrupted{counted}; resume it with: orch resume {sweep_id}"


def _driving(pid: int) -> bool:
    """Is the `orch` process that ran the sweep still alive (not a recycled pid)?"""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return pid != os.getpid() and any(b"orch" in part for part in command[:3])


def _fit(
    record: LocalSweepRecord,
    resolved: ResolvedSweep,
    resources: MachineResources,
    state: LocalState,
    target: TrackingTarget,
    make_tuner: Callable[[], Any],
    console: Console | None = None,
) -> SweepOutcome:
    """Fit the sweep's tuner (new or restored) and close everything it opened: each trial's run FINISHED,
    FAILED, or KILLED when the sweep stopped before it ended (Ctrl-C), then the sweep's parent run."""
    from cluster.node.experiment import callbacks_of
    from orchestrator.tracking.tune_callback import MLflowTrialTracker

    sweep = resolved.sweep
    client = TrackingClient(target.uri, target.artifact_root)
    # What the trials' processes (Ray workers, a command's script) read: where the run ledger is, which
    # MLflow store their runs are in (a command's own mlflow logging), the workspace (trainables.runtime).
    os.environ[runtime.RUN_LEDGER_ENV] = str(state.run_ledger(record.sweep_id))
    os.environ["MLFLOW_TRACKING_URI"] = target.uri
    os.environ[runtime.WORKSPACE_ENV] = str(resolved.workspace)
    # No SLURM job asks these trials for a checkpoint: a request file named in the environment orch was started
    # from (a job's shell, a test process) would stop a command's script at once and leave its trial waiting
    # for a requeue that never comes.
    os.environ.pop(runtime.CHECKPOINT_NOW_ENV, None)
    with local_ray(resources):
        tuner = make_tuner()
        callbacks = callbacks_of(tuner)
        tracker = next(c for c in callbacks if isinstance(c, MLflowTrialTracker))
        progress = next(c for c in callbacks if isinstance(c, SweepProgress))
        if console is not None:
            progress.console, progress.started = console, time.monotonic()  # a restored view draws here, from now
        try:
            with progress:
                grid = tuner.fit()
        except BaseException as exc:  # a second Ctrl-C, or Ray itself failed: nothing is left RUNNING
            tracker.close(timeout_s=10.0)
            tracker.close_unfinished(RunStatus.KILLED)
            client.end_run(record.parent_run_id, RunStatus.KILLED)
            if isinstance(exc, KeyboardInterrupt):
                raise SweepInterruptedError(interrupted_line(record.sweep_id)) from None
            if STRICT_METRIC_SIGN in str(exc):
                raise metric_missing_error(resolved.file, sweep.metric, record.sweep_id) from None
            raise
    tracker.close()
    rows = _result_rows(grid, sweep.metric, sweep.mode, tracker)
    outcome = SweepOutcome(
        record.sweep_id, record.experiment_id, record.parent_run_id, target, rows, resolved.space.sampled_paths()
    )
    if outcome.unfinished:  # interrupted (Ctrl-C): the runs wait, KILLED, for `orch resume`
        tracker.close_unfinished(RunStatus.KILLED)
        client.end_run(record.parent_run_id, RunStatus.KILLED)
        return outcome
    tracker.close_unfinished(RunStatus.FAILED)
    _log_summary(client, outcome, sweep.metric)
    try:
        _log_summary_pictures(client, outcome, sweep.metric, grid)
    except Exception as exc:  # pictures are a convenience: never fail a finished sweep over them
        (console or Console(stderr=True)).print(
            f"[yellow]warning:[/] summary pictures not recorded: {str(exc)[:200]}", highlight=False
        )
    client.end_run(record.parent_run_id, RunStatus.FAILED if outcome.failed else RunStatus.FINISHED)
    return outcome


STRICT_METRIC_SIGN = "did not include the specified metric"  # Ray Tune's check of every result


def metric_missing_error(sweep_file: Path | str, metric: str, sweep_id: str) -> ConfigError:
    """Ray Tune stops a sweep whose trainable returns a result without the sweep's metric (e.g. a metric computed
    only every few epochs): one line instead of Ray's traceback."""
    return ConfigError(
        sweep_file,
        "metric",
        f"a trial's result has no '{metric}' (Ray Tune needs the sweep's metric in every result); "
        f"sweep {sweep_id} stopped, its runs are KILLED",
        "report it at every step (e.g. the last value again), or choose a metric the trainable reports every step",
    )


def _result_rows(grid: Any, metric: str, mode: str, tracker: Any) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        value = metrics.get(metric)
        rows.append(
            {
                "trial_id": trial_id,
                "status": _status(result),
                "epoch": metrics.get("epoch", metrics.get("training_iteration")),
                "metric": float(value) if isinstance(value, (int, float)) else None,
                "params": flatten(dict(result.config or {})),
                "run_id": tracker.run_ids.get(trial_id),
                "error": error_line(result.error)[:300] if result.error else None,
                "reported": "training_iteration" in (result.metrics or {}),
            }
        )
    sign = 1.0 if mode == "min" else -1.0
    rows.sort(key=lambda r: (r["status"] != RunStatus.FINISHED, r["metric"] is None, sign * (r["metric"] or 0.0)))
    return rows


def _status(result: Any) -> RunStatus:
    """A trial's end: failed, finished (Tune marks its last result `done`), or stopped before its end
    because the sweep was interrupted (KILLED, like its run)."""
    if result.error:
        return RunStatus.FAILED
    return RunStatus.FINISHED if (result.metrics or {}).get("done") else RunStatus.KILLED


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
