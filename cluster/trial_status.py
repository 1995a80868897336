"""A Tune callback that keeps `trials.json` in the sweep folder current, for `orch status`."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from cluster.bundle import write_atomic


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
        job_id = os.environ.get("SLURM_JOB_ID", self.job_id)
        self.__init__(self.path, self.metric, job_id, self.min_interval_s)  # type: ignore[misc]

    def _entry(self, trial: Any) -> dict[str, Any]:
        return self.trials.setdefault(trial.trial_id, {"trial_id": trial.trial_id, "state": "PENDING", "epoch": 0, "metric": None})

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval_s:
            write_atomic(self.path, json.dumps({"updated": time.time(), "job_id": self.job_id, "trials": self.trials}, indent=1))
            self._last_write = now

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial).update(state="RUNNING", job_id=self.job_id)
        self._write(force=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        entry = self._entry(trial)
        value = result.get(self.metric)
        entry.update(state="RUNNING", epoch=int(result.get("epoch", result.get("training_iteration", 0))))
        if isinstance(value, (int, float)) and math.isfinite(value):
            entry["metric"] = float(value)
        self._write()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial)["state"] = "TERMINATED"
        self._write(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._entry(trial)["state"] = "ERROR"
        self._write(force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            entry = self._entry(trial)
            if entry["state"] not in ("TERMINATED", "ERROR"):
                entry["state"] = trial.status
        self._write()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._write(force=True)
