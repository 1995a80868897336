"""The workspace as a lab runs it: `orch run research/conf/sweeps/weightshare-tiny.yaml` on this machine with
real Ray and MLflow (from a scratch folder, which holds the MLflow store), and a bad hyperparameter refused by
`orch validate` in one line through the project's config_model (on a copy of the workspace in its own git, as
tests/byo make a lab's)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from weightshare.config import WeightShareConfig
from weightshare.layers import unique_parameter_count
from weightshare.networks import build_network
from weightshare.sharing import Sharing

from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import git

RESEARCH = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "research"
    shutil.copytree(RESEARCH / "conf", root / "conf")
    shutil.copytree(RESEARCH / "weightshare", root / "weightshare", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "weightshare")
    return root


def _unique_params(variant: str) -> int:
    cfg = WeightShareConfig(variant=variant)
    sharing = Sharing(cfg.sharing, cfg.factor, cfg.repeat_shortcut)
    return unique_parameter_count(build_network(cfg.network, sharing, in_channels=1, n_classes=10))


@pytest.mark.integration
def test_the_tiny_sweep_runs_tracked_with_accuracy_and_unique_params(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    sweep = RESEARCH / "conf" / "sweeps" / "weightshare-tiny.yaml"
    ran = run_orch(["run", str(sweep)], cwd=tmp_path, timeout=420)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "best trial" in ran.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("weightshare")
    trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
    assert sorted(r.data.params["variant"] for r in trials) == ["resnet_small/repeat/2", "separable_small/depthwise/2"]
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags.get("orch.error")
        accuracy = client.get_metric_history(run.info.run_id, "test_accuracy")
        assert [m.step for m in accuracy] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in accuracy)
        assert run.data.metrics["unique_params"] == _unique_params(run.data.params["variant"])
        assert run.data.metrics["samples_per_s"] > 0
        assert "checkpoint/state.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]


def test_a_bad_hyperparameter_is_refused_by_validate_in_one_line(workspace: Path) -> None:
    path = workspace / "conf" / "sweeps" / "weightshare-tiny.yaml"
    sweep = yaml.safe_load(path.read_text())
    sweep["search_space"]["learning_rate"] = 0.1
    path.write_text(yaml.safe_dump(sweep))
    refused = run_orch(["validate", "conf/sweeps/weightshare-tiny.yaml"], cwd=workspace)
    assert_one_error_line(refused, "weightshare-tiny.yaml", "learning_rate")
