"""The agent's tracking duties on the real cluster: delivering the spool of a sweep whose compute nodes cannot
reach MLflow (tracking.nodes_reach_server: false), and closing the runs a sweep killed outright left RUNNING."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.login.queue.store import QueueStore
from tests.cluster.test_slurm_sweeps import mlflow_runs, orch_env, sweep_folder
from tests.conftest import REPO, run_orch
from tests.queue.test_queue_slurm import AgentProcess, make_profile, resolved_profile_json

pytestmark = pytest.mark.integration

SWEEP = REPO / "conf" / "sweeps" / "soak-avae.yaml"  # one trial, 16 epochs, a checkpoint every 2


def test_agent_delivers_the_spool_then_closes_the_runs_of_a_sweep_killed_outright(slurm_cluster: Any, tmp_path: Path) -> None:
    """The nodes spool; the agent on the login node delivers while the trial trains. SLURM then kills the job with
    SIGKILL (nothing on the node closes anything): the agent delivers what was spooled, sees the sweep ended and
    closes its trial and parent runs KILLED. Every step delivered once."""
    from mlflow.tracking import MlflowClient

    profile = make_profile(tmp_path, "queue-spool")
    data = yaml.safe_load(profile.read_text())
    data["tracking"]["nodes_reach_server"] = False
    profile.write_text(yaml.safe_dump(data))
    queued = run_orch(["submit", str(SWEEP), "--cluster", str(profile), "--yes"], cwd=REPO, env=orch_env(slurm_cluster))
    assert queued.returncode == 0, queued.stdout + queued.stderr
    sweep_id = queued.stdout.split("queued sweep ", 1)[1].split()[0]
    agent = AgentProcess(slurm_cluster, resolved_profile_json(slurm_cluster, profile), tmp_path / "agent.log")
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    client = MlflowClient(f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    agent.start()
    try:
        # Delivered while it trains: the trial's run exists on the server with val_loss at 3 steps or more.
        deadline = time.monotonic() + 300
        while True:
            try:
                _, children = mlflow_runs(slurm_cluster, sweep_id)
            except (AssertionError, AttributeError):  # the agent has not submitted it yet (no experiment, no parent)
                children = []
            steps = [m.step for m in client.get_metric_history(children[0].info.run_id, "val_loss")] if children else []
            if len(steps) >= 3:
                break
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(1)
        assert children[0].info.status == "RUNNING"
        spool = sweep_folder(slurm_cluster, sweep_id) / "metric_spool"
        assert any(p.name.startswith("deferred-") for p in spool.iterdir()), list(spool.iterdir())  # nodes never reached it
        job_id = store.get(sweep_id).job_ids[0]
        slurm_cluster.run(["scancel", "--signal=KILL", "--full", job_id])
        deadline = time.monotonic() + 180
        while not store.get(sweep_id).state.terminal:
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(1)
        deadline = time.monotonic() + 60
        while True:
            parent, children = mlflow_runs(slurm_cluster, sweep_id)
            if {run.info.status for run in (parent, *children)} == {"KILLED"}:
                break
            assert time.monotonic() < deadline, (parent.info.status, [c.info.status for c in children])
            time.sleep(1)
    finally:
        agent.kill()
        store.close()
    (child,) = children
    epochs = [m.step for m in client.get_metric_history(child.info.run_id, "epoch_time_s")]
    for key in ("val_loss", "epoch_time_s", "train_loss"):
        steps = Counter(m.step for m in client.get_metric_history(child.info.run_id, key))
        assert max(steps.values()) == 1 and sorted(steps) == list(range(1, max(steps) + 1)), (key, steps)
    assert len(epochs) >= 3
