"""`orch tracking up|status|down` and the asynchronous metric logger against a real
`mlflow server`, including a 30 s outage in the middle of a logging stream."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking.async_logger import AsyncMetricLogger
from orchestrator.tracking.client import DeliveryError, TrackingClient
from orchestrator.tracking.spool import RunSpool
from tests.tracking.conftest import TrackingServer, run_tracking_cli

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("ORCH_TEST_OUTAGE_S", "30"))


def _new_run(client: TrackingClient, name: str) -> str:
    experiment_id = client.ensure_experiment("tracking-tests")
    return client.start_run(experiment_id, name, {}, {})


def _steps(client: TrackingClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(client.tracking_uri).get_metric_history(run_id, key))


def test_status_and_idempotent_up(tracking_server: TrackingServer) -> None:
    assert f"started at {tracking_server.uri}" in tracking_server.up_output.replace("\n", " ")
    pid = tracking_server.pid()
    status = run_tracking_cli(
        ["tracking", "status", "--state-dir", str(tracking_server.state_dir)], cwd=tracking_server.state_dir
    )
    assert status.returncode == 0 and f"up {tracking_server.uri}" in status.stdout, status.stdout + status.stderr
    again = tracking_server.up()
    assert "already up" in again.stdout and tracking_server.pid() == pid
    # lean settings: one worker, no job runner (a handful of processes, not 13-15)
    group = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
    assert 1 <= len(group) <= 4, group


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    result = run_tracking_cli(["tracking", "status", "--state-dir", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 3 and result.stdout.startswith("down"), result.stdout + result.stderr


class _HeldSend(TrackingClient):
    """The real client, whose next send can be made to hang in flight (a network that does not answer) until the
    test releases it."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.hold_next = threading.Event()  # set: the next send hangs until `release`
        self.held = threading.Event()  # a send hangs in flight now
        self.release = threading.Event()

    def send_metric_points(self, run_id, points, timeout_s=10.0):  # noqa: ANN001, ANN201
        if self.hold_next.is_set():
            self.hold_next.clear()
            self.held.set()
            self.release.wait(timeout=120)  # bound on the hold, not a verdict
            self.held.clear()
        return super().send_metric_points(run_id, points, timeout_s)


def test_every_step_exactly_once_across_a_server_outage(tracking_server: TrackingServer, tmp_path: Path) -> None:
    client = _HeldSend(tracking_server.uri)
    run_id = _new_run(client, "outage")
    logger = AsyncMetricLogger(client, tmp_path / "spool", flush_interval_s=0.2, send_timeout_s=3.0, max_backoff_s=4.0)
    max_steps, interval_s = 2000, 0.1
    outage_at, outage_done = 30, threading.Event()

    def stop_and_restart() -> None:
        tracking_server.down()  # SIGTERM to the server's process group
        time.sleep(OUTAGE_S)  # how long the outage lasts: the scenario, not a verdict
        tracking_server.up()  # same port, same SQLite store
        outage_done.set()

    worker = None
    step, logged_while_held, logged_after = 0, 0, 0
    try:
        while step < max_steps:  # bounded: log before, during and for a while after the outage
            if step == outage_at:
                worker = threading.Thread(target=stop_and_restart, daemon=True)
                worker.start()
                client.hold_next.set()  # the next send hangs in flight until this loop has logged 10 steps past it
            logger.log(run_id, {"loss": 1.0 / (step + 1), "acc": step / max_steps, "lr": 1e-3}, step=step)
            if client.held.is_set():  # this log() returned while a send hung in flight: it did not wait for the network
                logged_while_held += 1
                if logged_while_held >= 10:
                    client.release.set()
            step += 1
            time.sleep(interval_s)  # a training loop's pace, not a verdict
            if outage_done.is_set() and client.release.is_set():
                logged_after += 1
                if logged_after > 30:  # steps logged with the server back
                    break
    finally:
        client.release.set()
    steps = step
    assert worker is not None
    worker.join(timeout=OUTAGE_S + 120)  # bound on the wait, not a verdict
    assert outage_done.is_set()
    assert logger.close(timeout_s=120), logger.last_error
    # logging never waited for the network: log() went on returning while a send hung in flight
    assert logged_while_held >= 10, logged_while_held
    # the logger met the outage (a delivery failed while the server was down) and still lost and doubled nothing
    assert logger.last_error is not None
    for key in ("loss", "acc", "lr"):
        assert _steps(client, run_id, key) == list(range(steps)), key
    assert RunSpool(tmp_path / "spool", run_id).pending_count() == 0


class _AnswerLost(TrackingClient):
    """The real client, but the first answer of each kind is lost after the server committed the batch."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.lost = 0

    def send_metric_points(self, run_id, points, timeout_s=10.0):  # noqa: ANN001, ANN201
        super().send_metric_points(run_id, points, timeout_s)
        if self.lost == 0:
            self.lost += 1
            raise DeliveryError("read timed out", maybe_sent=True)


def test_ambiguous_failure_is_not_resent(tracking_server: TrackingServer, tmp_path: Path) -> None:
    client = _AnswerLost(tracking_server.uri)
    run_id = _new_run(client, "ambiguous")
    spool = RunSpool(tmp_path, run_id)
    timestamp = int(time.time() * 1000)
    spool.append([("m", float(step), timestamp + step, step) for step in range(50)])
    with pytest.raises(DeliveryError):
        spool.deliver(client)
    assert spool.inflight.exists()  # the send may have landed: remembered for the next attempt
    report = spool.deliver(client)
    assert report.skipped_duplicates == 50 and report.delivered == 0
    assert _steps(client, run_id, "m") == list(range(50))
    assert spool.pending_count() == 0 and not spool.inflight.exists()


def test_spool_without_server_then_deliver_exactly_once(tracking_server: TrackingServer, tmp_path: Path) -> None:
    """A compute node that cannot reach MLflow spools to the shared filesystem; `deliver` sends it once."""
    client = TrackingClient(tracking_server.uri)
    run_id = _new_run(client, "spooled")
    shared = tmp_path / "shared-spool"
    node_logger = AsyncMetricLogger(None, shared)  # no client: spool only
    for step in range(1, 121):
        node_logger.log(run_id, {"val_loss": 1.0 / step}, step=step)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "state.txt").write_text("weights")
    node_logger.log_artifacts(run_id, tmp_path / "ckpt", "checkpoint")
    assert node_logger.close(timeout_s=30)
    assert MlflowClient(client.tracking_uri).get_metric_history(run_id, "val_loss") == []

    env = {"MLFLOW_TRACKING_URI": tracking_server.uri}
    first = run_tracking_cli(["tracking", "deliver", str(shared)], cwd=tmp_path, env=env)
    assert first.returncode == 0 and "delivered 120 metric points and 1 artifact folders" in first.stdout, (
        first.stdout + first.stderr
    )
    second = run_tracking_cli(["tracking", "deliver", str(shared)], cwd=tmp_path, env=env)
    assert second.returncode == 0 and "delivered 0 metric points and 0 artifact" in second.stdout, second.stdout + second.stderr
    assert _steps(client, run_id, "val_loss") == list(range(1, 121))
    assert [a.path for a in MlflowClient(client.tracking_uri).list_artifacts(run_id, "checkpoint")] == ["checkpoint/state.txt"]
