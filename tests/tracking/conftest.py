"""Real components for the tracking tests, all on 127.0.0.1 and all stopped by the harness:

- moto's S3 server (`ThreadedMotoServer`, in this process) with one bucket;
- an `mlflow server` (SQLite store, artifacts proxied to that bucket) started and
  stopped through `orch tracking up|down`, i.e. in its own process group, by PID;
- one finished tiny sweep tracked there, shared by the end-to-end, compare, secrets
  and browser tests.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, CliResult, run_orch
from tests.harness.s3 import BUCKET, S3Server, free_port  # noqa: F401 - re-exported to the tracking tests

ARTIFACT_PREFIX = f"s3://{BUCKET}/mlflow"


def run_tracking_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> CliResult:
    """The `orch tracking ...` / `orch compare` commands, through their module entry point."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.tracking_cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def fake_secrets() -> dict[str, str]:
    """Credentials that must never show up in anything a sweep writes."""
    return {
        "AWS_ACCESS_KEY_ID": "AKIAORCH" + secrets.token_hex(6).upper(),
        "AWS_SECRET_ACCESS_KEY": "orchfakesecret" + secrets.token_hex(12),
        "MLFLOW_TRACKING_PASSWORD": "orchfakepassword" + secrets.token_hex(8),
    }


@pytest.fixture(scope="session")
def s3_server(fake_secrets: dict[str, str]):
    server = S3Server(free_port())
    environment = server.environment(fake_secrets["AWS_ACCESS_KEY_ID"], fake_secrets["AWS_SECRET_ACCESS_KEY"])
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class TrackingServer:
    state_dir: Path
    port: int
    up_output: str = ""
    history: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.state_dir / ".orch" / "tracking" / "mlflow.db"

    def up(self) -> CliResult:
        result = run_tracking_cli(
            [
                "tracking",
                "up",
                "--port",
                str(self.port),
                "--artifacts-destination",
                ARTIFACT_PREFIX,
                "--state-dir",
                str(self.state_dir),
            ],
            cwd=self.state_dir,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        self.history.append(result.stdout)
        return result

    def down(self) -> CliResult:
        result = run_tracking_cli(["tracking", "down", "--state-dir", str(self.state_dir)], cwd=self.state_dir)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def pid(self) -> int:
        import json

        return int(json.loads((self.state_dir / ".orch" / "tracking" / "server.json").read_text())["pid"])


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server):
    server = TrackingServer(tmp_path_factory.mktemp("team"), free_port())
    server.up_output = server.up().stdout
    yield server
    server.down()


@dataclass
class FinishedSweep:
    workdir: Path
    result: CliResult
    sweep_id: str
    experiment_id: str
    parent_run_id: str


def _sweep_parents(client: Any) -> dict[str, Any]:
    """The parent runs of every sweep in the `avae` experiment, by run id (none when it does not exist yet)."""
    experiment = client.get_experiment_by_name("avae")
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`orch.kind` = 'sweep'")
    return {run.info.run_id: run for run in runs}


@pytest.fixture(scope="session")
def finished_sweep(tracking_server: TrackingServer, fake_secrets: dict[str, str]) -> FinishedSweep:
    """`orch run conf/sweeps/avae-tiny.yaml` against the team server, checkpoints direct to S3."""
    from mlflow.tracking import MlflowClient

    env = {
        "MLFLOW_TRACKING_PASSWORD": fake_secrets["MLFLOW_TRACKING_PASSWORD"],
        "ORCH_DIRECT_S3_THRESHOLD_MB": "0.05",  # the checkpoint goes straight to S3, small pictures through the proxy
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    client = MlflowClient(tracking_server.uri)
    before = _sweep_parents(client)  # the parent runs earlier tests left: this run's is the one new parent
    result = run_orch(
        ["run", str(REPO / "conf" / "sweeps" / "avae-tiny.yaml"), "--tracking-uri", tracking_server.uri],
        cwd=tracking_server.state_dir,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    experiment = client.get_experiment_by_name("avae")
    new = [run for run_id, run in _sweep_parents(client).items() if run_id not in before]
    assert len(new) == 1, [run.data.tags.get("orch.sweep_id") for run in new]
    parent = new[0]
    return FinishedSweep(
        tracking_server.state_dir, result, parent.data.tags["orch.sweep_id"], experiment.experiment_id, parent.info.run_id
    )
