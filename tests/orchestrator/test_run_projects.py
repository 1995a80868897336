"""Every research project's tiny sweep runs end to end through `orch run` (real Ray Tune,
real PyTorch, MLflow's SQLite store), one parent run and a finished child run per trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_orch

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("sweep", "experiment", "metric"), [("avae3d-tiny", "avae3d", "val_mse"), ("hvae-tiny", "hvae", "val_elbo")]
)
def test_tiny_project_sweep(tmp_path: Path, sweep: str, experiment: str, metric: str) -> None:
    from mlflow.tracking import MlflowClient

    result = run_orch(["run", str(REPO / "conf" / "sweeps" / f"{sweep}.yaml")], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "best trial" in result.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.orch' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("orch.kind") == "trial"]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    for child in children:
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, metric)) == [1, 2]
        names = {a.path for a in client.list_artifacts(child.info.run_id, "pictures")}
        assert any(name.endswith(".png") for name in names), names
