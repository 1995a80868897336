"""Metric logging off the training thread: `log()` costs microseconds, never a network call.

    caller --log()--> bounded in-memory buffer --(background thread)--> spool on disk --> log_batch
                                                                         (append-only)     (when reachable)

The background thread moves points to the run's spool file (`spool.RunSpool`) and then
delivers them in batches of up to 1000. When the server is unreachable the points stay
on disk and delivery is retried with backoff, so nothing is lost and, through the
spool's acknowledged offsets, nothing is sent twice. `flush()` (at checkpoints, at the
end) waits, up to a timeout, until everything logged so far is delivered. Without a
client (a compute node that cannot reach the server) points are only spooled, for
`orch tracking deliver` or the agent to deliver later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.tracking.client import DeliveryError, MetricPoint, TrackingClient
from orchestrator.tracking.spool import RunSpool, spooled_runs

log = logging.getLogger(__name__)


class AsyncMetricLogger:
    """Batched, asynchronous, spooled metric logging for any number of runs."""

    def __init__(
        self,
        client: TrackingClient | None,
        spool_dir: Path,
        max_buffered_points: int = 100_000,
        flush_interval_s: float = 1.0,
        send_timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
        artifacts: Any = None,
    ) -> None:
        self._client = client
        self._artifacts = artifacts  # an ArtifactRouter; None: the client's own log_artifacts
        self._spool_dir = Path(spool_dir)
        self._max_buffered = max_buffered_points
        self._flush_interval_s = flush_interval_s
        self._send_timeout_s = send_timeout_s
        self._max_backoff_s = max_backoff_s
        self._buffer: deque[tuple[str, MetricPoint]] = deque()
        self._cond = threading.Condition()
        self._runs: dict[str, RunSpool] = {}
        self._logged = 0  # points accepted by log()
        self._spooled = 0  # points written to the spool
        self._flush_requests = 0
        self._idle = True  # nothing left to deliver as of the last pass
        self._backoff_s = 0.0
        self._next_attempt = 0.0
        self._closed = False
        self._generation = 0  # bumped whenever work appears outside the buffer (queued artifacts)
        self.last_error: str | None = None
        if client is not None:  # a restarted process delivers what an earlier one left behind
            for run in spooled_runs(self._spool_dir):
                if run.has_pending():
                    self._runs[run.run_id] = run
                    self._idle = False
        self._thread = threading.Thread(target=self._loop, name="orch-metric-logger", daemon=True)
        self._thread.start()

    # --- caller side (training or driver thread) -------------------------------------------
    def log(self, run_id: str, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """Queue one step's metrics. Blocks only if the buffer is full (the disk is behind)."""
        timestamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        points = [(run_id, (key, float(value), timestamp, int(step))) for key, value in metrics.items()]
        with self._cond:
            if self._closed:
                raise RuntimeError("metric logger is closed")
            while len(self._buffer) + len(points) > self._max_buffered and len(self._buffer) > 0:
                self._cond.wait(0.1)
            self._buffer.extend(points)
            self._logged += len(points)
            if len(self._buffer) >= 1000:
                self._cond.notify_all()

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Queue a folder for upload: copied into the spool now (the source may vanish), sent in the background."""
        with self._cond:
            run = self._runs.get(run_id)
            if run is None:
                run = self._runs[run_id] = RunSpool(self._spool_dir, run_id)
        run.spool_artifacts(Path(local_dir), artifact_path)
        with self._cond:
            self._idle = False
            self._generation += 1
            self._next_attempt = 0.0
            self._cond.notify_all()

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Wait until everything logged so far is delivered (spooled, without a client). False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            target = self._logged
            self._flush_requests += 1
            self._next_attempt = 0.0  # a flush tries the server now, whatever the backoff says
            self._cond.notify_all()
            while not (self._spooled >= target and (self._client is None or self._idle_after(target))):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(self, timeout_s: float | None = 30.0) -> bool:
        """Flush, then stop the thread. Points not delivered stay in the spool."""
        delivered = self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)
        return delivered

    def pending_points(self) -> int:
        with self._cond:
            runs = list(self._runs.values())
            buffered = len(self._buffer)
        return buffered + sum(run.pending_count() for run in runs)

    def _idle_after(self, target: int) -> bool:
        return self._idle and self._spooled >= target

    # --- background thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._buffer and not self._closed:
                    self._cond.wait(self._flush_interval_s)
                batch = list(self._buffer)
                self._buffer.clear()
                closed = self._closed
                generation = self._generation
                self._cond.notify_all()  # room in the buffer again
            try:
                self._spool(batch)
                idle = self._deliver() if self._client is not None else True
            except Exception as exc:  # never let the thread die: the spool keeps everything
                log.warning("metric logger: %s", exc)
                self.last_error = str(exc)
                idle = False
            with self._cond:
                self._spooled += len(batch)
                self._idle = idle and not self._buffer and generation == self._generation
                self._cond.notify_all()
            if closed and not batch:
                return

    def _spool(self, batch: list[tuple[str, MetricPoint]]) -> None:
        by_run: dict[str, list[MetricPoint]] = {}
        for run_id, point in batch:
            by_run.setdefault(run_id, []).append(point)
        for run_id, points in by_run.items():
            run = self._runs.get(run_id)
            if run is None:
                run = self._runs[run_id] = RunSpool(self._spool_dir, run_id)
            run.append(points, fsync=self._client is None)

    def _deliver(self) -> bool:
        """One delivery pass over runs with pending points; True when nothing is left."""
        if time.monotonic() < self._next_attempt:
            return False
        if self._client is None:
            return True
        idle = True
        for run in list(self._runs.values()):
            if not run.has_pending():
                continue
            try:
                report = run.deliver(self._client, timeout_s=self._send_timeout_s, uploader=self._artifacts)
            except DeliveryError as exc:
                self.last_error = str(exc)
                self._backoff_s = min(self._max_backoff_s, max(0.5, self._backoff_s * 2))
                self._next_attempt = time.monotonic() + self._backoff_s
                log.info("MLflow unreachable (%s); metrics kept in %s, retry in %.1f s", exc, run.dir, self._backoff_s)
                return False
            if report.pending:  # another deliverer holds the lock
                idle = False
        self._backoff_s = 0.0
        return idle
