"""End to end: `orch run` of a tiny sweep with real Ray Tune, real PyTorch training and
MLflow's real SQLite store, checked through MlflowClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, ConfTree, run_orch

pytestmark = pytest.mark.integration


def _runs(tracking_uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("orch.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("orch.kind") == "trial"]
    return client, parents, children


def _artifact_paths(client, run_id: str, path: str = "") -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path or None):
        found.extend(_artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return found


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("run")
    result = run_orch(["run", str(REPO / "conf" / "sweeps" / "avae-tiny.yaml")], cwd=workdir, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def test_run_prints_results_and_ui_command(tiny_sweep) -> None:
    _, result = tiny_sweep
    assert "best trial" in result.stdout
    assert "open the MLflow UI with: orch ui" in result.stdout
    assert "rank" in result.stdout and "val_loss" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_mlflow_layout_parent_and_children(tiny_sweep) -> None:
    workdir, _ = tiny_sweep
    state = workdir / ".orch"
    assert (state / "mlflow.db").is_file() and (state / "artifacts").is_dir()
    client, parents, children = _runs(f"sqlite:///{state / 'mlflow.db'}", "avae")

    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    sweep_id = parent.data.tags["orch.sweep_id"]
    assert sweep_id.startswith("avae-tiny-")
    assert parent.data.params["metric"] == "val_loss" and parent.data.params["num_trials"] == "2"
    assert "best_val_loss" in parent.data.metrics
    parent_artifacts = _artifact_paths(client, parent.info.run_id)
    assert {"sweep/sweep.yaml", "sweep/project.yaml", "summary/results.csv", "summary/best_config.yaml"} <= set(parent_artifacts)
    assert parent.info.artifact_uri.startswith((state / "artifacts").as_uri())

    assert len(children) == 2
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert child.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["orch.sweep_id"] == sweep_id and tags["orch.trial_id"]
        assert tags["orch.trainable"] == "avae"
        assert tags["orch.git_commit"] and tags["orch.git_dirty"] in ("true", "false")
        assert tags["orch.device"] == "cpu" and tags["orch.node_ip"] == "127.0.0.1" and tags["orch.node"]
        # every hyperparameter, sampled, constant or project default
        assert {"lr", "latent_dim", "epochs", "train_subset", "train_mode", "n_candidates", "seed"} <= set(params)
        assert params["epochs"] == "3" and params["train_mode"] == "train_opt"
        assert 1e-3 <= float(params["lr"]) <= 3e-3
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert {"train_loss", "val_loss_rot0", "val_loss_rot90", "orientation_r2"} <= set(child.data.metrics)
        artifacts = _artifact_paths(client, child.info.run_id)
        assert any(p.startswith("pictures/") and p.endswith(".png") for p in artifacts), artifacts
        assert "checkpoint/state.pt" in artifacts, artifacts


def test_tracking_uri_from_environment(conf_tree: ConfTree, tmp_path: Path) -> None:
    sweep = conf_tree.write(
        "sweeps",
        "one",
        {
            "name": "one",
            "project": "avae",
            "metric": "val_loss",
            "mode": "min",
            "search_space": {
                "latent_dim": {"choice": [2]},
                "epochs": 1,
                "train_subset": 64,
                "test_subset": 20,
                "eval_rotations_deg": [0],
                "n_candidates": 2,
                "train_mode": "upright",
            },
        },
    )
    elsewhere = tmp_path / "team.db"
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_orch(["run", str(sweep)], cwd=workdir, env={"MLFLOW_TRACKING_URI": f"sqlite:///{elsewhere}"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"orch ui --tracking-uri sqlite:///{elsewhere}" in result.stdout
    assert not (workdir / ".orch" / "mlflow.db").exists()
    _, parents, children = _runs(f"sqlite:///{elsewhere}", "avae")
    assert len(parents) == 1 and len(children) == 1
    assert children[0].info.status == "FINISHED"
