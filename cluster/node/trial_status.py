"""Tune callbacks of a SLURM sweep: `TrialStatusWriter` keeps `trials.json` current for `orch
status`; `ShardTrials` shows other callbacks a shard's trials by stable id and real config."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.callback import CallbackList

from cluster.node import shards
from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import TrialStatus


def slurm_job_id() -> str | None:
    """This job's id as `orch status` lists it: `123_4` for array task 4 of job 123."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class TrialStatusWriter(Callback):
    def __init__(self, path: Path, metric: str, job_id: str, min_interval_s: float = 2.0) -> None:
        self.path, self.metric, self.job_id, self.min_interval_s = path, metric, job_id, min_interval_s
        self.trials: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                self.trials = json.loads(path.read_text()).get("trials", {})
            except json.JSONDecodeError:
                self.trials = {}
        self._last_write = 0.0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restored with a resumed experiment: pick up what the previous attempt wrote."""
        self.__dict__.update(state)
        job_id = slurm_job_id() or self.job_id
        self.__init__(self.path, self.metric, job_id, self.min_interval_s)  # type: ignore[misc]

    def _entry(self, trial: Any) -> dict[str, Any]:
        return self.trials.setdefault(
            trial.trial_id, {"trial_id": trial.trial_id, "state": TrialStatus.PENDING.value, "epoch": 0, "metric": None}
        )

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval_s:
            write_atomic(self.path, json.dumps({"updated": time.time(), "job_id": self.job_id, "trials": self.trials}, indent=1))
            self._last_write = now

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial).update(state=TrialStatus.RUNNING.value, job_id=self.job_id)
        self._write(force=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        entry = self._entry(trial)
        value = result.get(self.metric)
        entry.update(state=TrialStatus.RUNNING.value, epoch=int(result.get("epoch", result.get("training_iteration", 0))))
        if isinstance(value, (int, float)) and math.isfinite(value):
            entry["metric"] = float(value)
        self._write()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial)["state"] = TrialStatus.TERMINATED.value
        self._write(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial)["state"] = TrialStatus.ERROR.value
        self._write(force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            entry = self._entry(trial)
            if not TrialStatus.parse(entry["state"]).is_done:
                entry["state"] = TrialStatus.parse(trial.status).value
        self._write()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._write(force=True)


class TrialView:
    """A Tune trial of a shard as callbacks should see it: stable id (`t0003`) and the trainable's real config."""

    __slots__ = ("_trial",)

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    @property
    def trial_id(self) -> str:
        return shards.trial_id_of(self._trial.config)

    @property
    def config(self) -> dict[str, Any]:
        return shards.unwrap(self._trial.config)

    def __getattr__(self, name: str) -> Any:  # status, checkpoint, num_failures, error_msg, ...
        return getattr(self._trial, name)


class ShardTrials(Callback):
    """Runs callbacks (MLflow tracker, status writer) on a shard's experiment, handing them `TrialView`s."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = CallbackList(list(callbacks))

    def get_state(self) -> dict | None:
        return self.callbacks.get_state()

    def set_state(self, state: dict) -> None:
        self.callbacks.set_state(state)


def _forward(hook: str) -> Any:
    def method(self: ShardTrials, **info: Any) -> None:
        if "trial" in info:
            info["trial"] = TrialView(info["trial"])
        if "trials" in info:
            info["trials"] = [TrialView(trial) for trial in info["trials"]]
        getattr(self.callbacks, hook)(**info)

    method.__name__ = hook
    return method


# Tune calls every hook with keyword arguments only (ray.tune.callback.CallbackList does the same).
for _hook in (
    "setup",
    "on_step_begin",
    "on_step_end",
    "on_trial_start",
    "on_trial_restore",
    "on_trial_save",
    "on_trial_result",
    "on_trial_complete",
    "on_trial_recover",
    "on_trial_error",
    "on_checkpoint",
    "on_experiment_end",
):
    setattr(ShardTrials, _hook, _forward(_hook))
