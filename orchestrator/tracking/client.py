"""The one adaptor that speaks to MLflow: experiments, runs, metrics, artifacts.

MLflow's own exceptions are translated into `TrackingError` here, so callers never
see a tracking-server stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.kernel.errors import OrchError
from orchestrator.kernel.states import RunStatus
from orchestrator.tracking.secrets import scrub, scrub_mapping

_MAX_PARAMS_PER_BATCH = 100
_EXPERIMENT_KIND_TAG, _EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_MAX_METRICS_PER_BATCH = 1000


class TrackingError(OrchError):
    """MLflow refused or could not be reached."""


class DeliveryError(TrackingError):
    """A metric batch was not acknowledged by the server.

    `maybe_sent`: the request may have reached the server (timeout, reset, 5xx), so a
    resend must first check what the server already holds. `permanent`: the server
    rejected the batch itself (bad run id, invalid value); resending cannot help.
    """

    def __init__(self, message: str, maybe_sent: bool, permanent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.permanent = permanent


def default_artifact_root(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts next to the database (absolute): MLflow's own default is
    ./mlruns relative to whatever folder the creating process ran in."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///") :]).expanduser()
        if database.is_absolute() or tracking_uri.startswith("sqlite:////"):
            return (database.parent / "mlartifacts").as_uri()
    return None


# (key, value, timestamp_ms, step): one metric point exactly as it is (re)sent.
MetricPoint = tuple[str, float, int, int]


class TrackingClient:
    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter on the console
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root or default_artifact_root(tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri)

    # Ray Tune pickles its callbacks with the experiment state: carry the target, not the connection.
    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "artifact_root": self.artifact_root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking_uri"], state["artifact_root"])  # type: ignore[misc]

    def unreachable(self, timeout_s: float = 3.0) -> str | None:
        """Why a tracking server cannot be reached, found in seconds (MLflow's own client retries for
        minutes); None when it answers, or when the store is not a server (a database, a folder)."""
        import socket
        from urllib.parse import urlparse

        if not self.is_remote:
            return None
        parsed = urlparse(self.tracking_uri)
        host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except ConnectionRefusedError:
            return f"nothing listens on {host}:{port} (connection refused)"
        except socket.gaierror:
            return f"the host name {host!r} does not resolve"
        except TimeoutError:
            return f"{host}:{port} did not answer within {timeout_s:g} s"
        except OSError as exc:
            return f"{host}:{port} cannot be reached ({exc.strerror or exc})"

    def ensure_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            experiment = self._client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self._client.restore_experiment(experiment.experiment_id)
                if _EXPERIMENT_KIND_TAG not in experiment.tags:
                    self._client.set_experiment_tag(experiment.experiment_id, _EXPERIMENT_KIND_TAG, _EXPERIMENT_KIND)
                return experiment.experiment_id
            location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
            # Marked as model training, so the MLflow 3 UI opens it on its runs, not on the GenAI overview.
            return self._client.create_experiment(name, artifact_location=location, tags={_EXPERIMENT_KIND_TAG: _EXPERIMENT_KIND})
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: cannot open experiment '{name}': {exc.message}") from None

    def start_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, str]) -> str:
        run = self._client.create_run(experiment_id, run_name=run_name, tags=scrub_mapping(tags))
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in scrub_mapping(params).items()]
        for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=items[start : start + _MAX_PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        items = [Metric(key, value, now_ms, step) for key, value in metrics.items()]
        for start in range(0, len(items), _MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=items[start : start + _MAX_METRICS_PER_BATCH])

    @property
    def is_remote(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def send_metric_points(self, run_id: str, points: list[MetricPoint], timeout_s: float = 10.0) -> None:
        """One log_batch, no client-side retries (the caller owns retrying); raises `DeliveryError`."""
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        if not self.is_remote:
            try:
                self._client.log_batch(run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in points])
            except MlflowException as exc:
                raise DeliveryError(exc.message, maybe_sent=False, permanent=exc.get_http_status_code() == 400) from None
            except Exception as exc:  # a locked or missing SQLite file: try again later
                raise DeliveryError(str(exc), maybe_sent=False) from None
            return
        body = {
            "run_id": run_id,
            "metrics": [{"key": k, "value": _json_number(v), "timestamp": t, "step": s} for k, v, t, s in points],
        }
        self._rest("POST", "/api/2.0/mlflow/runs/log-batch", timeout_s, json=body)

    def metric_points(self, run_id: str, key: str, timeout_s: float = 10.0) -> set[MetricPoint]:
        """Every point the server holds for (run, key), without client-side retries."""
        from mlflow.exceptions import MlflowException

        if not self.is_remote:
            try:
                history = self._client.get_metric_history(run_id, key)
            except MlflowException as exc:
                raise DeliveryError(exc.message, maybe_sent=True) from None
            return {(m.key, float(m.value), int(m.timestamp), int(m.step)) for m in history}
        found: set[MetricPoint] = set()
        token = None
        for _ in range(10_000):  # pages of 25k points; bounded
            params = {"run_id": run_id, "metric_key": key, "max_results": 25000, **({"page_token": token} if token else {})}
            answer = self._rest("GET", "/api/2.0/mlflow/metrics/get-history", timeout_s, params=params)
            for m in answer.get("metrics", []):
                found.add((m["key"], float(m.get("value", "nan")), int(m.get("timestamp", 0)), int(m.get("step", 0))))
            token = answer.get("next_page_token")
            if not token:
                break
        return found

    def _rest(self, method: str, endpoint: str, timeout_s: float, **kwargs: Any) -> dict:
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(
                get_default_host_creds(self.tracking_uri),
                endpoint,
                method,
                max_retries=0,
                backoff_factor=0,
                timeout=timeout_s,
                raise_on_status=False,
                **kwargs,
            )
        except Exception as exc:  # translated: was the request sent at all?
            raise DeliveryError(f"{endpoint}: {_first_line(exc)}", maybe_sent=not _connection_refused(exc)) from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                return {}
        permanent = response.status_code in (400, 404)
        raise DeliveryError(
            f"{endpoint}: HTTP {response.status_code} {response.text[:200]}", maybe_sent=not permanent, permanent=permanent
        )

    # --- deferred runs (created by the deliverer, not the node): no client-side retries ------
    def find_run(self, experiment_id: str, tags: Mapping[str, str], timeout_s: float = 10.0) -> str | None:
        """The oldest active run of the experiment carrying all these tags, or None; raises `DeliveryError`."""
        from mlflow.exceptions import MlflowException

        try:
            clause = tag_filter(tags)
        except TrackingError as exc:
            raise DeliveryError(str(exc), maybe_sent=False, permanent=True) from None
        order = ["attributes.start_time ASC"]
        if not self.is_remote:
            try:
                runs = self._client.search_runs([experiment_id], filter_string=clause, max_results=1, order_by=order)
            except MlflowException as exc:
                raise DeliveryError(exc.message, maybe_sent=False) from None
            return runs[0].info.run_id if runs else None
        answer = self._rest(
            "POST",
            "/api/2.0/mlflow/runs/search",
            timeout_s,
            json={"experiment_ids": [experiment_id], "filter": clause, "max_results": 1, "order_by": order},
        )
        found = answer.get("runs") or []
        return str(found[0]["info"]["run_id"]) if found else None

    def create_run(
        self, experiment_id: str, run_name: str, tags: Mapping[str, str], start_time_ms: int | None, timeout_s: float = 10.0
    ) -> str:
        """One create request, no retries; raises `DeliveryError` (a lost answer: look the run up before creating again)."""
        from mlflow.exceptions import MlflowException

        tags = scrub_mapping(tags)
        if not self.is_remote:
            try:
                return self._client.create_run(experiment_id, start_time=start_time_ms, tags=tags, run_name=run_name).info.run_id
            except MlflowException as exc:
                raise DeliveryError(exc.message, maybe_sent=True) from None
        body = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            **({"start_time": start_time_ms} if start_time_ms is not None else {}),
        }
        return self._rest("POST", "/api/2.0/mlflow/runs/create", timeout_s, json=body)["run"]["info"]["run_id"]

    def send_params_and_tags(
        self, run_id: str, params: Mapping[str, str], tags: Mapping[str, str], timeout_s: float = 10.0
    ) -> None:
        """Idempotent (the same param value twice is accepted); no retries; raises `DeliveryError`."""
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        param_items, tag_items = list(scrub_mapping(params).items()), list(scrub_mapping(tags).items())
        for start in range(0, max(len(param_items), len(tag_items)), _MAX_PARAMS_PER_BATCH):
            chunk_p, chunk_t = (
                param_items[start : start + _MAX_PARAMS_PER_BATCH],
                tag_items[start : start + _MAX_PARAMS_PER_BATCH],
            )
            if not self.is_remote:
                try:
                    self._client.log_batch(
                        run_id, params=[Param(k, v) for k, v in chunk_p], tags=[RunTag(k, v) for k, v in chunk_t]
                    )
                except MlflowException as exc:
                    raise DeliveryError(exc.message, maybe_sent=True, permanent=exc.get_http_status_code() == 400) from None
                continue
            body = {
                "run_id": run_id,
                "params": [{"key": k, "value": v} for k, v in chunk_p],
                "tags": [{"key": k, "value": v} for k, v in chunk_t],
            }
            self._rest("POST", "/api/2.0/mlflow/runs/log-batch", timeout_s, json=body)

    def set_status(self, run_id: str, status: RunStatus, end_time_ms: int | None, timeout_s: float = 10.0) -> None:
        """FINISHED/FAILED/KILLED (with the recorded end time) or RUNNING again; no retries; raises `DeliveryError`."""
        from mlflow.exceptions import MlflowException

        status = RunStatus(status)
        if not self.is_remote:
            try:
                if status == RunStatus.RUNNING:
                    self._client.update_run(run_id, status=status.value)
                else:
                    self._client.set_terminated(run_id, status=status.value, end_time=end_time_ms)
            except MlflowException as exc:
                raise DeliveryError(exc.message, maybe_sent=True) from None
            return
        body = {
            "run_id": run_id,
            "status": status.value,
            **({"end_time": end_time_ms} if end_time_ms and status != RunStatus.RUNNING else {}),
        }
        self._rest("POST", "/api/2.0/mlflow/runs/update", timeout_s, json=body)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(key, value) for key, value in scrub_mapping(tags).items()])

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self._client.log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._client.log_text(run_id, scrub(text), artifact_file)

    def end_run(self, run_id: str, status: RunStatus) -> None:
        self._client.set_terminated(run_id, status=RunStatus(status).value)

    def log_artifact_file(self, run_id: str, local_file: Path, artifact_path: str | None) -> None:
        self._client.log_artifact(run_id, str(local_file), artifact_path=artifact_path)

    def artifact_uri(self, run_id: str) -> str:
        return self._client.get_run(run_id).info.artifact_uri

    # --- runs as records ---------------------------------------------------------------------
    def run(self, run_id: str) -> RunRecord:
        return _record(self._client.get_run(run_id))

    def run_status(self, run_id: str) -> RunStatus:
        return RunStatus(self._client.get_run(run_id).info.status)

    def reopen_run(self, run_id: str) -> bool:
        """A run closed when its attempt died is RUNNING again while the next attempt trains; True if it was closed."""
        if self.run_status(run_id) == RunStatus.RUNNING:
            return False
        self._client.update_run(run_id, status=RunStatus.RUNNING.value)
        return True

    def close_running(self, run_ids: Iterable[str], status: RunStatus = RunStatus.KILLED) -> int:
        """End the runs among `run_ids` still RUNNING (never leaving a cancelled or dead sweep's runs open); how many."""
        closed = 0
        for run_id in run_ids:
            if self.run_status(run_id) == RunStatus.RUNNING:
                self.end_run(run_id, status)
                closed += 1
        return closed

    def delete_run(self, run_id: str) -> None:
        self._client.delete_run(run_id)

    def experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in self._client.search_experiments(max_results=1000)]

    def search_runs(
        self, experiment_ids: Iterable[str] | None, tags: Mapping[str, str], max_results: int = 10_000
    ) -> list[RunRecord]:
        """Runs carrying all these tags (exact values), in the given experiments (None: every experiment);
        MLflow's errors become `TrackingError`."""
        from mlflow.exceptions import MlflowException

        try:
            ids = list(experiment_ids) if experiment_ids is not None else self.experiment_ids()
            if not ids:
                return []
            return [
                _record(run) for run in self._client.search_runs(ids, filter_string=tag_filter(tags), max_results=max_results)
            ]
        except MlflowException as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc.message.splitlines()[0]}") from None

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of every point of one metric, oldest first."""
        return [(int(m.step), float(m.value)) for m in self._client.get_metric_history(run_id, key)]


@dataclass(frozen=True)
class RunRecord:
    """What the orchestrator reads of one MLflow run."""

    run_id: str
    experiment_id: str
    name: str
    status: RunStatus
    start_time_s: float
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def _record(run: Any) -> RunRecord:
    return RunRecord(
        run.info.run_id,
        run.info.experiment_id,
        run.info.run_name or "",
        RunStatus(run.info.status),
        (run.info.start_time or 0) / 1000,
        dict(run.data.tags),
        dict(run.data.params),
        dict(run.data.metrics),
    )


def tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow search filter matching runs that carry all these tags; values with quotes are refused
    (MLflow's filter language has no escape for them)."""
    for value in tags.values():
        if "'" in value or "`" in value:
            raise TrackingError(f"cannot search MLflow runs by a tag value with quotes: {value!r}")
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in sorted(tags.items()))


def _json_number(value: float) -> Any:
    # MLflow's REST API takes NaN and infinities as the strings protobuf's JSON mapping uses.
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _connection_refused(exc: BaseException) -> bool:
    """True when the request provably never reached a server (nothing listening)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen) or "NewConnectionError" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
