"""`orch tracking up --auth`: MLflow's basic-auth app with the admin from the environment."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.tracking.client import TrackingClient
from tests.tracking.conftest import free_port, run_tracking_cli

pytestmark = pytest.mark.integration


def test_basic_auth_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "orch-admin-pass-7f3a9c"
    env = {"MLFLOW_TRACKING_USERNAME": "orchadmin", "MLFLOW_TRACKING_PASSWORD": password}
    port = free_port()
    up = run_tracking_cli(["tracking", "up", "--port", str(port), "--auth", "--state-dir", str(tmp_path)], cwd=tmp_path, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        uri = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)  # noqa: S310
        assert refused.value.code == 401
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = TrackingClient(uri)
        run_id = client.start_run(client.ensure_experiment("auth"), "r", {}, {})
        client.send_metric_points(run_id, [("m", 1.0, 1, 1)])
        assert len(client.metric_points(run_id, "m")) == 1
    finally:
        down = run_tracking_cli(["tracking", "down", "--state-dir", str(tmp_path)], cwd=tmp_path)
        assert down.returncode == 0
    written = [p for p in (tmp_path / ".orch").rglob("*") if p.is_file()]
    assert written and not [p for p in written if password.encode() in p.read_bytes()]
