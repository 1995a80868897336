"""`orch run research/conf/sweeps/pruning-tiny.yaml` on this machine with real Ray and MLflow, as a lab runs its
own workspace (tests/byo/test_lab_local.py): the workspace is copied into its own git repository, orch and its
data readers come from this checkout (PYTHONPATH), and every trial's MLflow run holds the script's metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_orch
from tests.harness.lab_workspace import git

WORKSPACE = Path(__file__).resolve().parents[2]
REPO = WORKSPACE.parent


@pytest.mark.integration
def test_the_tiny_sweep_runs_with_one_tracked_run_per_trial(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    lab = tmp_path / "research"
    shutil.copytree(WORKSPACE / "conf", lab / "conf")
    shutil.copytree(WORKSPACE / "pruning", lab / "pruning", ignore=shutil.ignore_patterns("__pycache__"))
    git(lab, "init", "-q")
    git(lab, "add", "-A")
    git(lab, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "pruning")
    env = {"PYTHONPATH": str(REPO)}

    checked = run_orch(["validate", "conf/sweeps/pruning-tiny.yaml"], cwd=lab, env=env)
    assert checked.returncode == 0 and "sweep 'pruning-tiny' of project 'pruning': 2 trials" in checked.stdout, (
        checked.stdout + checked.stderr
    )
    ran = run_orch(["run", "conf/sweeps/pruning-tiny.yaml"], cwd=lab, env=env, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("pruning")
    trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
    assert sorted(r.data.params["sparsity"] for r in trials) == ["0.0", "0.75"]
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags.get("orch.error")
        steps = {
            name: [m.step for m in client.get_metric_history(run.info.run_id, name)]
            for name in ("test_accuracy", "nonzero_params")
        }
        assert steps == {"test_accuracy": [1, 2, 3], "nonzero_params": [1, 2, 3]}, steps
        metrics = run.data.metrics
        assert 0 < metrics["test_accuracy"] <= 1 and metrics["test_accuracy_int4_channel"] <= 1
        expected = 0.75 if run.data.params["sparsity"] == "0.75" else 0.0
        assert metrics["sparsity"] == pytest.approx(expected, abs=1e-4)
        assert "checkpoint/state.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
    dense, pruned = sorted(trials, key=lambda r: r.data.params["sparsity"])
    assert pruned.data.metrics["nonzero_params"] < 0.4 * dense.data.metrics["nonzero_params"]
