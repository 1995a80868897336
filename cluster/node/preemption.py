"""Checkpoint on the signal, then requeue: what a job does when SLURM preempts it or its time runs out.

SLURM sends USR2 (`--signal=USR2@lead`; for a preemption `preempt_send_user_signal` makes it the
same signal at the start of the partition's GraceTime). submitit's handler would requeue and exit
at once, so the trials would resume from their last periodic checkpoint. Instead, on the signal:

1. `SignalGate.on_signal` (the job's USR2 handler, main thread) writes the "checkpoint now" file
   and returns: Tune's loop goes on;
2. every trainable sees the file after its current epoch and asks Tune for a checkpoint
   (`should_checkpoint`, see trainables/base.py);
3. `SignalGate` (a Tune callback, main thread, every loop step) waits until each running trial has
   a checkpoint newer than the signal and Tune's experiment state was saved after them, or until
   the deadline (a trial keeps its last checkpoint when there is no time); then it hands the signal
   to submitit's own handler, which requeues the job and exits.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from orchestrator.kernel.states import TrialStatus
from trainables import runtime

_state: dict[str, Any] = {"pending": None, "original": None, "deadline_s": 20.0, "experiment": None}


def install(
    checkpoint_now_file: Path, experiment_dir: Path, deadline_s: float, on_handover: Callable[[str], None] | None = None
) -> None:
    """Put our USR2 handler in front of submitit's (call after submitit installed its own).
    `on_handover(reason)` is told how this attempt ends, just before submitit requeues."""
    os.environ[runtime.CHECKPOINT_NOW_ENV] = str(checkpoint_now_file)  # Ray workers started after this inherit it
    checkpoint_now_file.unlink(missing_ok=True)
    _state.update(
        original=signal.getsignal(signal.SIGUSR2),
        deadline_s=deadline_s,
        experiment=experiment_dir,
        file=checkpoint_now_file,
        pending=None,
        on_handover=on_handover,
    )
    signal.signal(signal.SIGUSR2, on_signal)


def on_signal(signum: int, frame: Any) -> None:
    if _state["pending"] is not None:
        return
    now = time.time()
    _state["pending"] = (signum, frame, now)
    runtime.request_checkpoint(_state["file"], signum, now)
    print(f"orch: got signal {signum}: checkpointing every running trial before the requeue", flush=True)


def pending() -> bool:
    """A signal is being handled: callbacks keep their waits short (the grace time is running)."""
    return _state["pending"] is not None


def _newest_checkpoint(trial_dir: Path) -> float:
    """When the trial's newest checkpoint was complete: our checkpoints' checksum file is written last;
    any other trainable's checkpoint folder counts when Tune has put it in the trial's folder."""
    stamps = []
    for folder in trial_dir.glob("checkpoint_*"):
        checksum = folder / "state.pt.sha256"
        stamps.append(checksum.stat().st_mtime if checksum.exists() else folder.stat().st_mtime)
    return max(stamps, default=0.0)


def checkpointing_on_request(trainable_cls: type) -> type:
    """A Tune trainable class that also checkpoints after the step during which the job asked for one
    (SLURM's signal, trainables.runtime): a plain Ray Tune class gets what our own trainables do."""

    class CheckpointOnRequest(trainable_cls):
        _orch_request_seen = 0.0

        def step(self) -> Any:
            result = super().step()
            at = runtime.checkpoint_requested_at()
            if at is not None and at > self._orch_request_seen and isinstance(result, dict):
                self._orch_request_seen = at
                result = {**result, "should_checkpoint": True}
            return result

    CheckpointOnRequest.__name__ = CheckpointOnRequest.__qualname__ = trainable_cls.__name__
    CheckpointOnRequest.__doc__ = trainable_cls.__doc__
    return CheckpointOnRequest


def _ready(experiment: Path, trials: list[Any], since: float) -> bool:
    running = [t for t in trials if TrialStatus.parse(getattr(t, "status", "")) == TrialStatus.RUNNING]
    newest = 0.0
    for trial in running:
        storage = getattr(trial, "storage", None)
        stamp = _newest_checkpoint(Path(storage.trial_fs_path)) if storage is not None else 0.0
        if stamp < since:
            return False
        newest = max(newest, stamp)
    states = list(experiment.glob("experiment_state*.json"))
    return bool(states) and max(p.stat().st_mtime for p in states) >= newest


class SignalGate(Callback):
    """Hands a pending USR2 to submitit once the trials have checkpointed (or the deadline passed)."""

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        pending = _state["pending"]
        if pending is None:
            return
        signum, frame, since = pending
        experiment: Path | None = _state["experiment"]
        waited = time.time() - since
        timed_out = waited >= _state["deadline_s"]
        if int(waited) // 5 != _state.get("reported", -1) and not timed_out:
            _state["reported"] = int(waited) // 5
            states = {getattr(t, "trial_id", "?"): getattr(t, "status", "?") for t in trials}
            print(f"orch: {waited:.0f} s after the signal, waiting for checkpoints of {states}", flush=True)
        if timed_out or (experiment is not None and _ready(experiment, trials, since)):
            print(
                f"orch: {'deadline reached' if timed_out else 'trials checkpointed'} {time.time() - since:.1f} s after "
                "the signal: requeueing",
                flush=True,
            )
            original: Callable[[int, Any], None] | None = _state["original"]
            _state["pending"] = None
            owner = getattr(original, "__self__", None)  # submitit's SignalHandler tells a time-out from a preemption
            kind = (
                ("time limit" if owner.has_timed_out() else "preemption")
                if owner is not None and hasattr(owner, "has_timed_out")
                else "signal"
            )
            reason = (
                f"USR2 ({kind}); {'deadline reached before every trial checkpointed' if timed_out else 'trials checkpointed'} "
                f"{time.time() - since:.1f} s after it"
            )
            if _state.get("on_handover"):
                _state["on_handover"](reason)
            if callable(original):
                original(signum, frame)  # submitit: checkpoint(), requeue, sys.exit
