"""The logs uploaded to a trial's run (its stdout/stderr, the job's logs) have secret values masked, like
params, tags and text artifacts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


def test_a_secret_a_trial_prints_is_masked_in_its_uploaded_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.client import TrackingClient
    from orchestrator.tracking.tune_callback import MLflowTrialTracker

    secret = "s3cr3t-value-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / "stdout").write_text(f"epoch 1\nconnecting with {secret}\n")
    (trial_dir / "stderr").write_bytes(b"warning \xff\xfe not utf-8, then " + secret.encode() + b"\n")
    sweep = tmp_path / "sweep"
    (sweep / "submitit" / "42").mkdir(parents=True)
    (sweep / "submitit" / "42" / "42_0_log.out").write_text(f"job log: AWS key {secret}\n")

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = TrackingClient(uri, (tmp_path / "artifacts").as_uri())
    experiment = client.ensure_experiment("secrets")
    parent = client.start_run(experiment, "sweep", {}, {})
    tracker = MLflowTrialTracker(
        client, experiment, parent, {}, "s", ledger_path=sweep / "mlflow_runs.json", spool_dir=tmp_path / "spool"
    )
    trial = SimpleNamespace(
        trial_id="t0", config={"lr": 0.1}, storage=SimpleNamespace(trial_fs_path=str(trial_dir)), num_failures=0
    )
    run_id = tracker._run_for(trial)
    tracker._log_logs(trial, run_id)
    assert tracker.close(timeout_s=60)

    reader = MlflowClient(uri)
    names = {a.path for a in reader.list_artifacts(run_id, "logs")}
    assert {"logs/trial_stdout", "logs/trial_stderr", "logs/42_0_log.out"} <= names, names
    uploaded = {}
    for name in ("trial_stdout", "trial_stderr", "42_0_log.out"):
        uploaded[name] = Path(reader.download_artifacts(run_id, f"logs/{name}", str(tmp_path / name))).read_bytes()
        assert secret.encode() not in uploaded[name] and b"***" in uploaded[name], (name, uploaded[name])
    assert b"\xff\xfe" in uploaded["trial_stderr"]  # bytes that are not text kept as they were
