"""The workspace as a lab runs it: `orch run research/conf/sweeps/nuclei-tiny.yaml` on this machine with real
Ray and MLflow (from a scratch folder, which holds the MLflow store): every trial's run holds the tile and
detection metrics and the checkpoint's pictures; and a bad hyperparameter refused by `orch validate` in one
line through the project's config_model (on a copy of the workspace in its own git, as tests/byo make a lab's)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import git

RESEARCH = Path(__file__).resolve().parents[2]
DETECTION = ["det_precision", "det_recall", "det_f1", "class_accuracy", "acc_L", "sens_BE", "spec_ME"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "research"
    shutil.copytree(RESEARCH / "conf", root / "conf")
    shutil.copytree(RESEARCH / "nuclei", root / "nuclei", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "nuclei")
    return root


@pytest.mark.integration
def test_the_tiny_sweep_runs_tracked_with_detection_metrics_and_pictures(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    sweep = RESEARCH / "conf" / "sweeps" / "nuclei-tiny.yaml"
    ran = run_orch(["run", str(sweep)], cwd=tmp_path, timeout=420)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "best trial" in ran.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("nuclei")
    trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
    assert sorted(r.data.params["tile_size"] for r in trials) == ["14", "16"]
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags.get("orch.error")
        accuracy = client.get_metric_history(run.info.run_id, "tile_accuracy")
        assert [m.step for m in accuracy] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in accuracy)
        for key in DETECTION:  # detect_every: 1
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1, 2] and 0.0 <= history[-1].value <= 1.0, key
        assert run.data.metrics["samples_per_s"] > 0
        pictures = [a.path for a in client.list_artifacts(run.info.run_id, "pictures")]
        assert {"pictures/heatmap.png", "pictures/detections.png"} <= set(pictures), pictures
        assert "checkpoint/state.pt" in [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]


def test_a_bad_hyperparameter_is_refused_by_validate_in_one_line(workspace: Path) -> None:
    path = workspace / "conf" / "sweeps" / "nuclei-tiny.yaml"
    sweep = yaml.safe_load(path.read_text())
    sweep["search_space"]["tile_size"] = {"grid": [8, 16]}
    path.write_text(yaml.safe_dump(sweep))
    refused = run_orch(["validate", "conf/sweeps/nuclei-tiny.yaml"], cwd=workspace)
    assert_one_error_line(refused, "nuclei-tiny.yaml", "tile_size")
