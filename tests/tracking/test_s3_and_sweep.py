"""Artifacts on moto's S3 server, a real tiny sweep against the team server, the sweep
summary, `orch compare`, and a scan of everything the sweep wrote for secrets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking.artifacts import TAG_ARTIFACTS_S3, ArtifactRouter
from orchestrator.tracking.async_logger import AsyncMetricLogger
from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.s3 import S3Uploader
from tests.tracking.conftest import BUCKET, FinishedSweep, S3Server, TrackingServer, run_tracking_cli

pytestmark = pytest.mark.integration


def _artifact_paths(client, run_id: str, path: str = "") -> list[str]:  # noqa: ANN001
    found = []
    for item in client.list_artifacts(run_id, path or None):
        found.extend(_artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return found


def test_large_artifacts_go_straight_to_s3_and_show_in_the_run(
    tracking_server: TrackingServer, s3_server: S3Server, tmp_path: Path
) -> None:
    client = TrackingClient(tracking_server.uri)
    run_id = client.start_run(client.ensure_experiment("tracking-tests"), "direct", {}, {})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "big.bin").write_bytes(b"\0" * (3 * 1024 * 1024))  # multipart with 1 MB parts
    (folder / "small.txt").write_text("tiny")
    router = ArtifactRouter(
        client,
        f"s3://{BUCKET}/mlflow",
        direct_threshold=1024 * 1024,
        uploader=S3Uploader(multipart_threshold_mb=1, multipart_chunk_mb=1),
    )
    router.log_artifacts(run_id, folder, "checkpoint")
    keys = s3_server.keys(prefix="mlflow/")
    assert any(k.endswith(f"{run_id}/artifacts/checkpoint/big.bin") for k in keys), keys
    assert any(k.endswith(f"{run_id}/artifacts/checkpoint/small.txt") for k in keys), keys  # through the proxy
    run = MlflowClient(client.tracking_uri).get_run(run_id)
    assert run.data.tags[TAG_ARTIFACTS_S3].startswith(f"s3://{BUCKET}/mlflow/") and run_id in run.data.tags[TAG_ARTIFACTS_S3]
    # the UI lists both: the direct upload sits exactly where the proxy looks
    assert set(_artifact_paths(MlflowClient(client.tracking_uri), run_id)) == {"checkpoint/big.bin", "checkpoint/small.txt"}


def test_checkpoint_arrives_after_s3_refused_uploads(
    tracking_server: TrackingServer, s3_server: S3Server, tmp_path: Path
) -> None:
    client = TrackingClient(tracking_server.uri)
    run_id = client.start_run(client.ensure_experiment("tracking-tests"), "s3-outage", {}, {})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"weights" * 1000)
    router = ArtifactRouter(
        client,
        f"s3://{BUCKET}/mlflow",
        direct_threshold=0,
        uploader=S3Uploader(attempts=2, max_wait_s=0.5, connect_timeout_s=1.0),
    )
    logger = AsyncMetricLogger(client, tmp_path / "spool", flush_interval_s=0.2, max_backoff_s=2.0, artifacts=router)
    s3_server.stop()
    try:
        logger.log_artifacts(run_id, folder, "checkpoint")  # no exception reaches the caller
        logger.log(run_id, {"loss": 0.5}, step=1)
        assert not logger.flush(timeout_s=4.0)  # S3 refuses: kept in the spool
        assert logger.last_error and "checkpoint" in logger.last_error
    finally:
        s3_server.start()
    assert logger.close(timeout_s=60), logger.last_error
    assert any(k.endswith(f"{run_id}/artifacts/checkpoint/state.pt") for k in s3_server.keys("mlflow/"))
    assert [m.step for m in MlflowClient(client.tracking_uri).get_metric_history(run_id, "loss")] == [1]


def test_sweep_children_have_pictures_and_checkpoint_on_s3(
    finished_sweep: FinishedSweep, tracking_server: TrackingServer, s3_server: S3Server
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_server.uri)
    runs = client.search_runs([finished_sweep.experiment_id], filter_string=f"tags.`orch.sweep_id` = '{finished_sweep.sweep_id}'")
    children = [r for r in runs if r.data.tags.get("orch.kind") == "trial"]
    assert len(children) == 2
    keys = s3_server.keys("mlflow/")
    for child in children:
        assert child.info.status == "FINISHED" and child.info.artifact_uri.startswith("mlflow-artifacts:")
        run_keys = [k for k in keys if f"/{child.info.run_id}/artifacts/" in k]
        assert any("/artifacts/pictures/" in k and k.endswith(".png") for k in run_keys), run_keys
        assert any(k.endswith("/artifacts/checkpoint/state.pt") for k in run_keys), run_keys
        assert child.data.tags[TAG_ARTIFACTS_S3].startswith(f"s3://{BUCKET}/mlflow/")  # state.pt went direct
        assert {"orch.attempt", "orch.gpu_type", "orch.host"} <= set(child.data.tags)
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_loss")) == [1, 2, 3]
    parent = client.get_run(finished_sweep.parent_run_id)
    summary = set(_artifact_paths(client, parent.info.run_id))
    assert {"summary/results.csv", "summary/learning_curves.png", "sweep/resolved.yaml", "code/version.txt"} <= summary, summary
    assert {"summary/val_loss_vs_lr.png", "summary/val_loss_vs_latent_dim.png"} <= summary, summary


def test_compare_sorts_trials_and_shows_differing_params(finished_sweep: FinishedSweep, tracking_server: TrackingServer) -> None:
    result = run_tracking_cli(
        ["compare", finished_sweep.sweep_id, "--tracking-uri", tracking_server.uri], cwd=finished_sweep.workdir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert finished_sweep.sweep_id in out and "val_loss" in out and "lr" in out
    assert "epochs" not in out and "train_subset" not in out  # constants are not shown
    lines = [line for line in out.splitlines() if "FINISHED" in line]
    values = [float(line.split("│")[-3]) for line in lines]
    assert len(values) == 2 and values == sorted(values)
    missing = run_tracking_cli(["compare", "no-such-sweep", "--tracking-uri", tracking_server.uri], cwd=finished_sweep.workdir)
    assert missing.returncode == 1 and "no sweep 'no-such-sweep'" in missing.stderr and "Traceback" not in missing.stderr


def test_compare_group_by_summarises_and_records_on_the_parent_run(
    finished_sweep: FinishedSweep, tracking_server: TrackingServer
) -> None:
    """The real server: grouped by a hyperparameter all trials share (the tiny sweep has no seeds to average), the one
    group's mean and std are those of the trials' last val_loss, and the parent run holds the table and picture."""
    import statistics

    client = MlflowClient(tracking_server.uri)
    trials = client.search_runs(
        [finished_sweep.experiment_id],
        filter_string=f"tags.`orch.sweep_id` = '{finished_sweep.sweep_id}' and tags.`orch.kind` = 'trial'",
    )
    losses = [run.data.metrics["val_loss"] for run in trials]
    result = run_tracking_cli(
        [
            "compare",
            finished_sweep.sweep_id,
            "--group-by",
            "--by",
            "epochs",
            "--also",
            "train_loss",
            "--tracking-uri",
            tracking_server.uri,
        ],
        cwd=finished_sweep.workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{statistics.fmean(losses):.6g} ± {statistics.stdev(losses):.3g} ({len(losses)})" in result.stdout
    assert "train_loss mean" in result.stdout
    summary = set(_artifact_paths(client, finished_sweep.parent_run_id, "summary"))
    assert {"summary/groups.csv", "summary/groups.md", "summary/groups_val_loss.png"} <= summary, summary
    table = client.download_artifacts(finished_sweep.parent_run_id, "summary/groups.md")
    assert f"| {trials[0].data.params['epochs']} | {len(losses)} |" in Path(table).read_text()
    # Default grouping: every varied hyperparameter but seed (here lr): one group per trial, no std.
    default = run_tracking_cli(
        ["compare", finished_sweep.sweep_id, "--group-by", "--tracking-uri", tracking_server.uri], cwd=finished_sweep.workdir
    )
    assert default.returncode == 0 and f"{len(trials)} groups by" in default.stdout, default.stdout + default.stderr
    unknown = run_tracking_cli(
        ["compare", finished_sweep.sweep_id, "--by", "nope", "--tracking-uri", tracking_server.uri], cwd=finished_sweep.workdir
    )
    assert unknown.returncode == 1 and "--by nope: not a hyperparameter" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_no_secret_in_anything_the_sweep_wrote(
    finished_sweep: FinishedSweep, tracking_server: TrackingServer, s3_server: S3Server, fake_secrets: dict[str, str]
) -> None:
    needles = [value.encode() for value in fake_secrets.values()]
    leaks: list[str] = []

    def scan(name: str, data: bytes) -> None:
        leaks.extend(f"{name} holds {needle.decode()[:8]}..." for needle in needles if needle in data)

    scan("orch run output", (finished_sweep.result.stdout + finished_sweep.result.stderr).encode())
    files = [p for p in finished_sweep.workdir.rglob("*") if p.is_file()]
    assert len(files) > 20  # the .orch dir, the server log, the Ray results, the spool
    for path in files:
        scan(str(path), path.read_bytes())
    for key in s3_server.keys():
        scan(f"s3://{BUCKET}/{key}", s3_server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
    with sqlite3.connect(tracking_server.db) as db:  # every row of every MLflow table, as text
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - table names from sqlite_master
                scan(f"mlflow table {table}", repr(row).encode())
    assert not leaks, leaks


def test_secret_values_are_masked_in_params_and_tags(
    tracking_server: TrackingServer, fake_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", fake_secrets["MLFLOW_TRACKING_PASSWORD"])
    client = TrackingClient(tracking_server.uri)
    leaked = f"--token={fake_secrets['AWS_SECRET_ACCESS_KEY']}"
    run_id = client.start_run(client.ensure_experiment("tracking-tests"), "masked", {"note": leaked}, {"cmd": leaked})
    client.log_text(run_id, f"password {fake_secrets['MLFLOW_TRACKING_PASSWORD']}\n", "notes.txt")
    run = MlflowClient(client.tracking_uri).get_run(run_id)
    assert run.data.params["cmd"] == "--token=***" and run.data.tags["note"] == "--token=***"
    notes = MlflowClient(client.tracking_uri).download_artifacts(run_id, "notes.txt", str(tmp_path))
    assert Path(notes).read_text() == "password ***\n"
