"""A Ray Tune callback that records each trial as a nested MLflow run (see `layout`).

It runs in the Tune driver: trial processes never talk to MLflow themselves, so a
trainable stays usable without the orchestrator.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from ray.tune import Callback

from orchestrator.tracking import layout
from orchestrator.tracking.client import TrackingClient

log = logging.getLogger(__name__)


class MLflowTrialTracker(Callback):
    """Creates, feeds and closes one child run per trial under the sweep's parent run."""

    def __init__(
        self, client: TrackingClient, experiment_id: str, parent_run_id: str, base_tags: dict[str, str], sweep_name: str,
        ledger_path: Path | None = None,
    ) -> None:
        self._client = client
        self._experiment_id = experiment_id
        self._parent_run_id = parent_run_id
        self._base_tags = base_tags
        self._sweep_name = sweep_name
        self._ledger_path = ledger_path
        self.run_ids: dict[str, str] = self._read_ledger()
        self.final_status: dict[str, str] = {}

    # The ledger (trial id -> MLflow run id) on disk lets a restarted job continue the same runs.
    def _read_ledger(self) -> dict[str, str]:
        if self._ledger_path is None or not self._ledger_path.exists():
            return {}
        try:
            return dict(json.loads(self._ledger_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _write_ledger(self) -> None:
        if self._ledger_path is not None:
            tmp = self._ledger_path.with_name(f".{self._ledger_path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.run_ids, indent=1, sort_keys=True))
            os.replace(tmp, self._ledger_path)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.run_ids.update(self._read_ledger())

    def _run_for(self, trial: Any) -> str:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            tags = {
                **self._base_tags,
                layout.TAG_KIND: layout.KIND_TRIAL,
                layout.TAG_TRIAL_ID: trial.trial_id,
                layout.TAG_PARENT: self._parent_run_id,
                layout.TAG_HOST: socket.gethostname(),
            }
            run_id = self._client.start_run(
                self._experiment_id, layout.trial_run_name(self._sweep_name, trial.trial_id), tags, layout.trial_params(trial.config)
            )
            self.run_ids[trial.trial_id] = run_id
            self._write_ledger()
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = layout.result_metrics(result)
        if metrics:
            self._client.log_metrics(self._run_for(trial), metrics, step=layout.result_step(result))

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        # Pictures are refreshed at every checkpoint, so a stopped sweep still shows its latest ones.
        self._log_checkpoint(trial, checkpoint, include_state=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        if trial.checkpoint is not None:
            self._log_checkpoint(trial, trial.checkpoint, include_state=True)
        self._client.end_run(run_id, "FINISHED")
        self.final_status[trial.trial_id] = "FINISHED"

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        message = (getattr(trial, "error_msg", None) or "trial failed").strip().splitlines()
        self._client.set_tags(run_id, {"orch.error": (message[-1] if message else "trial failed")[:500]})
        self._client.end_run(run_id, "FAILED")
        self.final_status[trial.trial_id] = "FAILED"

    def close_unfinished(self, status: str = "KILLED") -> None:
        """Close runs of trials that never ended (sweep interrupted), never leaving them RUNNING."""
        for trial_id, run_id in self.run_ids.items():
            if trial_id not in self.final_status:
                self._client.end_run(run_id, status)
                self.final_status[trial_id] = status

    def _log_checkpoint(self, trial: Any, checkpoint: Any, include_state: bool) -> None:
        run_id = self._run_for(trial)
        with checkpoint.as_directory() as directory:
            folder = Path(directory)
            pictures = folder / layout.ARTIFACT_PICTURES
            if pictures.is_dir():
                self._client.log_artifacts(run_id, pictures, layout.ARTIFACT_PICTURES)
            if include_state:
                self._client.log_artifacts(run_id, folder, layout.ARTIFACT_CHECKPOINT)
