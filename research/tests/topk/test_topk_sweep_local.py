"""The workspace as a lab runs it: `orch run research/conf/sweeps/topk-tiny.yaml` on this machine with real Ray
and MLflow (from a scratch folder, which holds the MLflow store): every trial's run holds clean accuracy and
each attack's accuracy; and a bad hyperparameter refused by `orch validate` in one line through the project's
config_model (on a copy of the workspace in its own git, as tests/byo make a lab's)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import git

RESEARCH = Path(__file__).resolve().parents[2]
ATTACKS = [
    "acc_fgsm_eps100",
    "acc_pgd_eps100",
    "acc_bpda_eps100",
    "acc_transfer_eps100",
    "acc_worst_eps100",
    "acc_noise_sigma200",
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "research"
    shutil.copytree(RESEARCH / "conf", root / "conf")
    shutil.copytree(RESEARCH / "topk", root / "topk", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "topk")
    return root


@pytest.mark.integration
def test_the_tiny_sweep_runs_tracked_with_clean_and_attack_accuracies(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    sweep = RESEARCH / "conf" / "sweeps" / "topk-tiny.yaml"
    ran = run_orch(["run", str(sweep)], cwd=tmp_path, timeout=420)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "best trial" in ran.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("topk")
    trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
    assert sorted(r.data.params["variant"] for r in trials) == ["relu", "topk/0.25"]
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags.get("orch.error")
        accuracy = client.get_metric_history(run.info.run_id, "test_accuracy")
        assert [m.step for m in accuracy] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in accuracy)
        for key in ATTACKS:  # attacked at the last epoch only
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [2] and 0.0 <= history[0].value <= 1.0, key
        metrics = run.data.metrics
        assert metrics["acc_worst_eps100"] == min(metrics[f"acc_{a}_eps100"] for a in ("fgsm", "pgd", "bpda", "transfer"))
        assert metrics["samples_per_s"] > 0
        assert "checkpoint/state.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
    topk = next(r for r in trials if r.data.params["variant"] == "topk/0.25")
    assert "twin_test_accuracy" in topk.data.metrics  # the ReLU twin trained alongside


def test_a_bad_hyperparameter_is_refused_by_validate_in_one_line(workspace: Path) -> None:
    path = workspace / "conf" / "sweeps" / "topk-tiny.yaml"
    sweep = yaml.safe_load(path.read_text())
    sweep["search_space"]["learning_rate"] = 0.1
    path.write_text(yaml.safe_dump(sweep))
    refused = run_orch(["validate", "conf/sweeps/topk-tiny.yaml"], cwd=workspace)
    assert_one_error_line(refused, "topk-tiny.yaml", "learning_rate")
