"""Deferred tracking: compute nodes that never reach MLflow (`tracking.nodes_reach_server: false`).

The tracker is fed a Tune-like trial sequence while no tracking server is reachable;
everything lands in the spool. Delivery to the real `mlflow server` (twice, after a
requeue, concurrently, through the CLI) gives one child run under the sweep's parent
with every step exactly once, its pictures and checkpoint, and its final status.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.kernel import tracking_layout as layout
from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.spool import (
    DEFERRED_PREFIX,
    RunSpool,
    deliver_spool,
    spooled_runs,
)
from orchestrator.tracking.tune_callback import MLflowTrialTracker
from tests.tracking.conftest import TrackingServer, free_port, run_tracking_cli

pytestmark = pytest.mark.integration

EXPERIMENT = "deferred-tests"
KEYS = ("loss", "acc", "epoch", "epoch_time_s")  # what layout.result_metrics keeps of each result


class _NeverCalled(TrackingClient):
    """A client aimed at a closed port on 127.0.0.1 that fails the test if anything uses it."""

    def __init__(self) -> None:
        super().__init__(f"http://127.0.0.1:{free_port()}")

    def __getattribute__(self, name: str) -> Any:
        if name in {
            "start_run",
            "set_tags",
            "end_run",
            "log_params",
            "log_metrics",
            "send_metric_points",
            "log_artifacts",
            "log_artifact_file",
            "artifact_uri",
            "log_text",
            "ensure_experiment",
            "create_run",
            "find_run",
            "send_params_and_tags",
            "set_status",
            "metric_points",
            "run",
            "run_status",
            "reopen_run",
            "close_running",
            "delete_run",
            "search_runs",
            "metric_history",
        }:
            raise AssertionError(f"a deferred tracker called TrackingClient.{name}")
        return super().__getattribute__(name)


@dataclass
class _Checkpoint:
    folder: Path

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        yield str(self.folder)


@dataclass
class _Trial:
    trial_id: str
    config: dict[str, Any]
    num_failures: int = 0
    checkpoint: _Checkpoint | None = None
    error_msg: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _checkpoint(root: Path, step: int) -> _Checkpoint:
    folder = root / f"checkpoint_{step:06d}"
    (folder / "pictures").mkdir(parents=True)
    (folder / "pictures" / "recon.png").write_bytes(b"\x89PNG fake picture at step %d" % step)
    (folder / "state.pt").write_bytes(b"weights %d" % step)
    return _Checkpoint(folder)


def _feed(tracker: MLflowTrialTracker, trial: _Trial, steps: range, ckpt_root: Path, complete: bool) -> None:
    tracker.on_trial_start(0, [trial], trial)
    for step in steps:
        result = {
            "loss": 1.0 / step,
            "acc": step / 100,
            "epoch": step,
            "training_iteration": step,
            "hostname": "node-017",
            "time_this_iter_s": 0.01,
            "done": False,
        }
        tracker.on_trial_result(step, [trial], trial, result)
        if step % 4 == 0:
            tracker.on_checkpoint(step, [trial], trial, _checkpoint(ckpt_root, step))
    if complete:
        trial.checkpoint = _checkpoint(ckpt_root, steps[-1] + 1000)
        tracker.on_trial_complete(steps[-1], [trial], trial)


@pytest.fixture()
def sweep(tracking_server: TrackingServer, tmp_path: Path) -> dict[str, Any]:
    """What the login node does at submit: the experiment and the sweep's parent run exist on the server."""
    client = TrackingClient(tracking_server.uri)
    experiment_id = client.ensure_experiment(EXPERIMENT)
    sweep_id = f"sweep-{tmp_path.name}"
    parent = client.start_run(experiment_id, sweep_id, {layout.TAG_KIND: layout.KIND_SWEEP, layout.TAG_SWEEP_ID: sweep_id}, {})
    base_tags = {layout.TAG_SWEEP_ID: sweep_id, layout.TAG_SWEEP_NAME: "tiny", layout.TAG_PROJECT: "deferred"}
    ledger = tmp_path / "shared" / "runs.json"
    ledger.parent.mkdir()
    return {
        "client": client,
        "experiment_id": experiment_id,
        "parent": parent,
        "base_tags": base_tags,
        "ledger": ledger,
        "spool": ledger.parent / "metric_spool",
        "sweep_id": sweep_id,
    }


def _children(client: TrackingClient, sweep: dict[str, Any]) -> list:
    return MlflowClient(client.tracking_uri).search_runs(
        [sweep["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{sweep['parent']}'"
    )


def _steps(client: TrackingClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(client.tracking_uri).get_metric_history(run_id, key))


def _artifacts(client: TrackingClient, run_id: str, path: str) -> list[str]:
    return sorted(a.path for a in MlflowClient(client.tracking_uri).list_artifacts(run_id, path))


def test_deferred_tracker_spools_then_delivers_exactly_once(sweep: dict[str, Any], tmp_path: Path) -> None:
    client = sweep["client"]
    tracker = MLflowTrialTracker(
        _NeverCalled(),
        sweep["experiment_id"],
        sweep["parent"],
        sweep["base_tags"],
        "tiny",
        ledger_path=sweep["ledger"],
        deferred=True,
    )
    trial = _Trial("abc12_00000", {"lr": 0.01, "model": {"width": 32}})
    _feed(tracker, trial, range(1, 21), tmp_path / "ckpt", complete=True)
    tracker.on_experiment_end([trial])
    tracker.end_parent("FINISHED")

    key = tracker.run_ids[trial.trial_id]
    assert key.startswith(DEFERRED_PREFIX) and sweep["ledger"].exists()
    assert _children(client, sweep) == []  # nothing reached MLflow
    assert MlflowClient(client.tracking_uri).get_run(sweep["parent"]).info.status == "RUNNING"

    first = deliver_spool(sweep["spool"], client)
    assert (first.runs_created, first.delivered, first.pending) == (1, 20 * len(KEYS), 0), first
    assert first.statuses == 2  # the trial's, then the parent's
    second = deliver_spool(sweep["spool"], client)
    assert (second.runs_created, second.runs_found, second.delivered, second.artifacts, second.statuses) == (0, 0, 0, 0, 0)

    runs = _children(client, sweep)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == f"tiny/{trial.trial_id}"
    assert run.data.params == {"lr": "0.01", "model.width": "32"}
    assert run.data.tags[layout.TAG_TRIAL_ID] == trial.trial_id and run.data.tags[layout.TAG_KIND] == layout.KIND_TRIAL
    assert run.data.tags[layout.TAG_NODE] == "node-017" and run.data.tags["orch.spool_key"] == key
    for metric in KEYS:
        assert _steps(client, run.info.run_id, metric) == list(range(1, 21)), metric
    assert _artifacts(client, run.info.run_id, "pictures") == ["pictures/recon.png"]
    assert "checkpoint/state.pt" in _artifacts(client, run.info.run_id, "checkpoint")
    assert MlflowClient(client.tracking_uri).get_run(sweep["parent"]).info.status == "FINISHED"
    assert not any(spool.has_pending() for spool in spooled_runs(sweep["spool"]))


def test_requeue_and_lost_create_answer_keep_one_run(sweep: dict[str, Any], tmp_path: Path) -> None:
    client = sweep["client"]
    tracker = MLflowTrialTracker(
        None, sweep["experiment_id"], sweep["parent"], sweep["base_tags"], "tiny", ledger_path=sweep["ledger"]
    )
    trial = _Trial("abc12_00001", {"lr": 0.1})
    _feed(tracker, trial, range(1, 9), tmp_path / "ckpt-a", complete=False)
    tracker.flush()
    state = pickle.dumps(tracker)  # what Tune keeps in the experiment state; the job is then preempted
    tracker.close()
    key = tracker.run_ids[trial.trial_id]

    # The agent delivers while the job is away: the run exists, RUNNING, steps 1..8.
    during = deliver_spool(sweep["spool"], client)
    assert (during.runs_created, during.delivered, during.statuses) == (1, 8 * len(KEYS), 0), during
    (run,) = _children(client, sweep)
    assert run.info.status == "RUNNING" and _steps(client, run.info.run_id, "loss") == list(range(1, 9))
    # As if the answer to the create had been lost: the next delivery must find the run, not make another.
    RunSpool(sweep["spool"], key).server_run.unlink()

    restored = pickle.loads(state)  # the requeued job
    assert restored.deferred and restored.run_ids[trial.trial_id] == key
    trial.num_failures = 1
    _feed(restored, trial, range(9, 17), tmp_path / "ckpt-b", complete=True)
    restored.on_experiment_end([trial])

    reports = [deliver_spool(sweep["spool"], client) for _ in range(2)]
    # 8 steps of each metric, and the resumed attempt's re-done work (orch_redone_steps, orch_redone_s: none re-done)
    assert (reports[0].runs_created, reports[0].runs_found, reports[0].delivered) == (0, 1, 8 * len(KEYS) + 2), reports[0]
    assert reports[1].delivered == reports[1].runs_created == reports[1].runs_found == 0
    (run,) = _children(client, sweep)
    assert run.info.status == "FINISHED" and run.data.tags[layout.TAG_ATTEMPT] == "1"
    for metric in KEYS:
        assert _steps(client, run.info.run_id, metric) == list(range(1, 17)), metric
    assert _artifacts(client, run.info.run_id, "pictures") == ["pictures/recon.png"]
    assert len(list(sweep["spool"].iterdir())) == 1  # one key for the trial across both jobs


def test_deliver_cli_concurrently_and_again(sweep: dict[str, Any], tracking_server: TrackingServer, tmp_path: Path) -> None:
    client = sweep["client"]
    tracker = MLflowTrialTracker(
        None, sweep["experiment_id"], sweep["parent"], sweep["base_tags"], "tiny", ledger_path=sweep["ledger"]
    )
    trials = [_Trial(f"abc12_0001{n}", {"lr": 10.0**-n}) for n in range(3)]
    for n, trial in enumerate(trials):
        _feed(tracker, trial, range(1, 13), tmp_path / f"ckpt-{n}", complete=True)
    tracker.on_experiment_end(trials)

    env = {"MLFLOW_TRACKING_URI": tracking_server.uri, "COLUMNS": "200"}
    command = [sys.executable, "-m", "orchestrator.laptop.tracking_cli", "tracking", "deliver", str(sweep["spool"])]
    both = [
        subprocess.Popen(
            command, cwd=tmp_path, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180) for proc in both]
    assert all(proc.returncode in (0, 1) for proc in both), outputs  # 1: the other one held a run's lock
    again = run_tracking_cli(["tracking", "deliver", str(sweep["spool"])], cwd=tmp_path, env=env)
    assert again.returncode == 0 and "0 runs created (0 found)" in again.stdout, again.stdout + again.stderr
    assert "delivered 0 metric points and 0 artifact folders" in again.stdout

    runs = _children(client, sweep)
    assert sorted(r.data.tags[layout.TAG_TRIAL_ID] for r in runs) == sorted(t.trial_id for t in trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        for metric in KEYS:
            assert _steps(client, run.info.run_id, metric) == list(range(1, 13)), (run.info.run_id, metric)
        assert _artifacts(client, run.info.run_id, "pictures") == ["pictures/recon.png"]
