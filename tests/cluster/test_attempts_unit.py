"""Attempt bookkeeping without a cluster: the fencing token, the checkpoint-now request, the signal gate."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.node import preemption
from orchestrator.tracking.tune_callback import AttemptFence
from trainables import runtime


def test_a_stale_attempt_stops_writing_once_a_newer_one_started(tmp_path: Path) -> None:
    ledger = tmp_path / "mlflow_runs.json"
    (tmp_path / "attempt.json").write_text(json.dumps({"token": "7.0.aaaa", "started_at": time.time()}))
    old = AttemptFence(tmp_path / "attempt.json", "7.0.aaaa")
    assert old.current()
    (tmp_path / "attempt.json").write_text(json.dumps({"token": "7.1.bbbb", "started_at": time.time()}))
    old._checked_at = 0.0  # noqa: SLF001 (checked at most once a second)
    assert not old.current()
    new = AttemptFence(tmp_path / "attempt.json", "7.1.bbbb")
    assert new.current() and new.seconds_since_start() is not None
    os.environ.pop("ORCH_ATTEMPT_TOKEN", None)
    assert AttemptFence.from_environment(ledger).path is None  # no token (orch run): never fenced


def test_trainable_asks_for_one_checkpoint_per_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.base import CheckpointableTrainable

    request = tmp_path / "checkpoint_now.json"
    monkeypatch.setenv("ORCH_CHECKPOINT_NOW_FILE", str(request))
    fake = SimpleNamespace()
    ask = CheckpointableTrainable._checkpoint_requested  # noqa: SLF001
    assert not ask(fake)
    request.write_text(json.dumps({"signal": 12, "at": 100.0}))
    assert ask(fake) and not ask(fake)  # once per request
    request.write_text(json.dumps({"signal": 12, "at": 200.0}))
    assert ask(fake)


def test_gate_hands_the_signal_over_once_trials_checkpointed(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    trial_dir = experiment / "trial_0"
    (trial_dir / "checkpoint_000001").mkdir(parents=True)
    handed = []
    previous = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, lambda signum, frame: handed.append(signum))
    try:
        preemption.install(tmp_path / "now.json", experiment, deadline_s=30, on_handover=lambda reason: handed.append(reason))
        preemption.on_signal(signal.SIGUSR2, None)
        asked_at = runtime.checkpoint_requested_at(str(tmp_path / "now.json"))
        assert asked_at is not None and preemption.pending()
        trial = SimpleNamespace(trial_id="t0", status="RUNNING", storage=SimpleNamespace(trial_fs_path=str(trial_dir)))
        gate = preemption.SignalGate()
        gate.on_step_begin(1, [trial])
        assert handed == []  # no checkpoint newer than the signal yet
        # Written after the signal: stamped so, whatever the file system's clock granularity (no sleep to make it so).
        for written, text in (
            (trial_dir / "checkpoint_000001" / "state.pt.sha256", "x"),
            (experiment / "experiment_state-1.json", "{}"),
        ):
            written.write_text(text)
            os.utime(written, (asked_at + 1, asked_at + 1))
        gate.on_step_begin(2, [trial])
        assert handed[0].startswith("USR2 (signal); trials checkpointed") and handed[1] == signal.SIGUSR2
        assert not preemption.pending()
    finally:
        signal.signal(signal.SIGUSR2, previous)
