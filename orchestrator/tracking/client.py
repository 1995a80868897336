"""The one adaptor that speaks to MLflow: experiments, runs, metrics, artifacts.

MLflow's own exceptions are translated into `TrackingError` here, so callers never
see a tracking-server stack trace.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

from orchestrator.errors import OrchError

_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000


class TrackingError(OrchError):
    """MLflow refused or could not be reached."""


class TrackingClient:
    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter on the console
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self._client = MlflowClient(tracking_uri=tracking_uri)

    # Ray Tune pickles its callbacks with the experiment state: carry the target, not the connection.
    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "artifact_root": self.artifact_root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking_uri"], state["artifact_root"])  # type: ignore[misc]

    def ensure_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            experiment = self._client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self._client.restore_experiment(experiment.experiment_id)
                return experiment.experiment_id
            location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: cannot open experiment '{name}': {exc.message}") from None

    def start_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, str]) -> str:
        run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=items[start : start + _MAX_PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        items = [Metric(key, value, now_ms, step) for key, value in metrics.items()]
        for start in range(0, len(items), _MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=items[start : start + _MAX_METRICS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self._client.log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._client.log_text(run_id, text, artifact_file)

    def end_run(self, run_id: str, status: str) -> None:
        self._client.set_terminated(run_id, status=status)

    @property
    def raw(self) -> Any:
        """The underlying MlflowClient, for read-only queries."""
        return self._client
