"""Actor reuse through `orch run`: a lab's plain Ray Tune class that implements `reset_config` runs all its
trials in one worker process (no process start, no re-import per trial) and still trains each trial from its
own config; a class without it gets a new process per trial, as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_orch
from tests.harness.lab_workspace import git, make_lab, project, sweep, write

PID_CLASSES = '''"""Quad that reports its process id; the Reusable one can be reset for the next trial."""
import os

from lab.quad import Quad


class PidQuad(Quad):
    def step(self):
        return {**super().step(), "worker_pid": os.getpid()}


class ReusableQuad(PidQuad):
    def reset_config(self, new_config):
        self.setup(new_config)
        return True
'''


@pytest.mark.integration
def test_a_class_with_reset_config_runs_every_trial_in_one_process(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    lab = make_lab(tmp_path / "lab", epochs=2)
    (lab / "lab" / "pid_quad.py").write_text(PID_CLASSES)
    lrs = [0.1, 0.2, 0.3]
    for name in ("PidQuad", "ReusableQuad"):
        write(
            lab / "conf" / "projects" / f"{name}.yaml",
            {**project("cls", 2, 0.0), "name": name, "trainable": f"lab.pid_quad:{name}", "metrics": ["loss", "worker_pid"]},
        )
        one_slot = {**sweep("cls", lrs), "name": name, "project": name, "max_concurrent_trials": 1}
        write(lab / "conf" / "sweeps" / f"{name}.yaml", one_slot)
    git(lab, "add", "-A")
    git(lab, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "pid classes")

    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    pids = {}
    for name in ("PidQuad", "ReusableQuad"):
        ran = run_orch(["run", f"conf/sweeps/{name}.yaml"], cwd=lab, timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        experiment = client.get_experiment_by_name(name)
        trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
        assert sorted(float(r.data.params["lr"]) for r in trials) == lrs
        for run in trials:  # each trial trained from its own config and started at its first step
            assert run.info.status == "FINISHED"
            lr = float(run.data.params["lr"])
            assert run.data.metrics["loss"] == pytest.approx(9.0 * (1 - 2 * lr) ** 4), lr
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
        pids[name] = {int(r.data.metrics["worker_pid"]) for r in trials}
    assert len(pids["ReusableQuad"]) == 1, pids  # reused: one process ran the three trials
    assert len(pids["PidQuad"]) == 3, pids  # no reset_config: a process per trial
    assert os.getpid() not in pids["ReusableQuad"] | pids["PidQuad"]
