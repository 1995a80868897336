"""The metric and artifact spool: what is logged but not yet on the tracking server.

Layout (one folder per MLflow run; the folder may live on a shared filesystem)::

    <spool>/<run_id>/metrics.jsonl   append-only, one metric point a line:
                                     {"q": seq, "k": key, "v": value, "t": timestamp_ms, "s": step}
    <spool>/<run_id>/acked.json      {"offset": bytes delivered, "seq": last seq delivered} (atomic replace)
    <spool>/<run_id>/inflight.json   written before a batch is sent, removed once it is acknowledged
    <spool>/<run_id>/rejected.jsonl  points the server refused for good (bad value, deleted run)
    <spool>/<run_id>/deliver.lock    one deliverer per run at a time (process or agent)
    <spool>/<run_id>/artifacts/<n>/  files to upload, with meta.json {"artifact_path": ...}

Exactly once: a point is sent only after the acknowledged offset; the offset moves
only after the server acknowledged the batch. If a batch may have reached the server
without an acknowledgement (timeout, reset, crash between send and ack: an
`inflight.json` is left), the server's metric history for those keys is read first
and the points it already holds are not sent again. (MLflow's SQL store also drops
exact duplicates, as each point carries its original timestamp.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from filelock import FileLock, Timeout

from orchestrator.tracking.client import DeliveryError, MetricPoint, TrackingClient

log = logging.getLogger(__name__)

MAX_POINTS_PER_BATCH = 1000  # MLflow's log_batch limit


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class DeliveryReport:
    delivered: int = 0
    skipped_duplicates: int = 0
    rejected: int = 0
    artifacts: int = 0
    pending: int = 0  # left for a later attempt (server unreachable)

    def add(self, other: DeliveryReport) -> None:
        for name in ("delivered", "skipped_duplicates", "rejected", "artifacts", "pending"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class RunSpool:
    """The spool folder of one run."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id
        self.dir = root / run_id
        self.metrics = self.dir / "metrics.jsonl"
        self.acked = self.dir / "acked.json"
        self.inflight = self.dir / "inflight.json"
        self.rejected = self.dir / "rejected.jsonl"
        self.artifacts = self.dir / "artifacts"
        self._next_seq: int | None = None

    # --- writer side -------------------------------------------------------------------
    def append(self, points: Iterable[MetricPoint], fsync: bool = False) -> int:
        """Append points (one write call); returns how many."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._next_seq is None:
            self._next_seq = self._last_seq() + 1
        lines = []
        for key, value, timestamp, step in points:
            lines.append(json.dumps({"q": self._next_seq, "k": key, "v": value, "t": timestamp, "s": step}) + "\n")
            self._next_seq += 1
        if lines:
            with open(self.metrics, "a", encoding="utf-8") as out:
                out.write("".join(lines))
                if fsync:
                    out.flush()
                    os.fsync(out.fileno())
        return len(lines)

    def _last_seq(self) -> int:
        """The sequence number of the last complete line (a restarted writer continues after it)."""
        try:
            with open(self.metrics, "rb") as spool:
                spool.seek(0, os.SEEK_END)
                size = spool.tell()
                spool.seek(max(0, size - 4096))
                lines = [line for line in spool.read().split(b"\n") if line.strip()]
        except FileNotFoundError:
            return 0
        for line in reversed(lines):
            try:
                return int(json.loads(line)["q"])
            except (ValueError, KeyError):
                continue
        return 0

    def spool_artifacts(self, local_dir: Path, artifact_path: str) -> Path:
        """Copy a folder into the spool for later upload (compute nodes without a server)."""
        target = self.artifacts / f"{uuid.uuid4().hex}"
        tmp = self.artifacts / f".{target.name}.tmp"
        shutil.copytree(local_dir, tmp / "files")
        (tmp / "meta.json").write_text(json.dumps({"artifact_path": artifact_path}))
        os.replace(tmp, target)  # appears whole or not at all
        return target

    # --- reader side ---------------------------------------------------------------------
    def acked_offset(self) -> int:
        try:
            return int(json.loads(self.acked.read_text())["offset"])
        except (OSError, ValueError, KeyError):
            return 0

    def pending_points(self, limit: int = MAX_POINTS_PER_BATCH) -> tuple[list[MetricPoint], int, int]:
        """Up to `limit` complete, unacknowledged points: (points, end offset, last seq)."""
        offset = self.acked_offset()
        points: list[MetricPoint] = []
        last_seq = 0
        try:
            with open(self.metrics, "rb") as spool:
                spool.seek(offset)
                end = offset
                for raw in spool:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written
                    record = json.loads(raw)
                    points.append((record["k"], float(record["v"]), int(record["t"]), int(record["s"])))
                    last_seq = int(record["q"])
                    end += len(raw)
                    if len(points) >= limit:
                        break
        except FileNotFoundError:
            return [], offset, 0
        return points, end, last_seq

    def pending_count(self) -> int:
        try:
            size = self.metrics.stat().st_size
        except FileNotFoundError:
            return 0
        return 0 if size <= self.acked_offset() else len(self.pending_points(limit=10**9)[0])

    def has_pending(self) -> bool:
        try:
            return self.metrics.stat().st_size > self.acked_offset() or any(self._artifact_batches())
        except FileNotFoundError:
            return any(self._artifact_batches())

    def _ack(self, offset: int, seq: int) -> None:
        _write_atomic(self.acked, json.dumps({"offset": offset, "seq": seq}))

    def _artifact_batches(self) -> list[Path]:
        if not self.artifacts.is_dir():
            return []
        return sorted(p for p in self.artifacts.iterdir() if p.is_dir() and not p.name.startswith("."))

    # --- delivery ------------------------------------------------------------------------
    def deliver(self, client: TrackingClient, timeout_s: float = 10.0, uploader: Any = None) -> DeliveryReport:
        """Send everything pending, batch by batch; stops at the first transient failure.

        Raises `DeliveryError` (transient) after recording progress; returns the report
        when everything pending is delivered. Returns at once if another process holds
        the run's lock.
        """
        report = DeliveryReport()
        if not self.dir.is_dir():
            return report
        lock = FileLock(str(self.dir / "deliver.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            report.pending = 1
            return report
        try:
            self._deliver_metrics(client, timeout_s, report)
            self._deliver_artifacts(client, uploader, report)
        finally:
            lock.release()
        return report

    def _deliver_metrics(self, client: TrackingClient, timeout_s: float, report: DeliveryReport) -> None:
        for _ in range(1_000_000):  # bounded: one batch per turn
            points, end, seq = self.pending_points()
            if not points:
                return
            if self.inflight.exists():
                held = _points_on_server(client, self.run_id, points, timeout_s)
                fresh = [p for p in points if _identity(p) not in held]
                report.skipped_duplicates += len(points) - len(fresh)
                points = fresh
            if points:
                _write_atomic(self.inflight, json.dumps({"end": end, "seq": seq}))
                try:
                    client.send_metric_points(self.run_id, points, timeout_s=timeout_s)
                except DeliveryError as exc:
                    if exc.permanent:
                        with open(self.rejected, "a", encoding="utf-8") as out:
                            out.write(json.dumps({"error": str(exc)[:300], "points": points}) + "\n")
                        log.warning("MLflow run %s refused %d metric points for good: %s", self.run_id, len(points), exc)
                        report.rejected += len(points)
                    else:
                        if not exc.maybe_sent:
                            self.inflight.unlink(missing_ok=True)
                        raise
                else:
                    report.delivered += len(points)
            self._ack(end, seq)
            self.inflight.unlink(missing_ok=True)

    def _deliver_artifacts(self, client: TrackingClient, uploader: Any, report: DeliveryReport) -> None:
        for batch in self._artifact_batches():
            meta = json.loads((batch / "meta.json").read_text())
            try:
                if uploader is not None:
                    uploader.log_artifacts(self.run_id, batch / "files", meta["artifact_path"])
                else:
                    client.log_artifacts(self.run_id, batch / "files", meta["artifact_path"])
            except Exception as exc:  # re-uploading the same paths later is harmless (overwrite)
                raise DeliveryError(f"artifacts {meta['artifact_path']}: {str(exc)[:200]}", maybe_sent=True) from None
            done = batch.with_name(f".{batch.name}.done")
            os.replace(batch, done)
            shutil.rmtree(done, ignore_errors=True)
            report.artifacts += 1


def _identity(point: MetricPoint) -> tuple[str, int, int, float]:
    key, value, timestamp, step = point
    return key, step, timestamp, value


def _points_on_server(client: TrackingClient, run_id: str, points: list[MetricPoint], timeout_s: float) -> set:
    held = set()
    for key in sorted({p[0] for p in points}):
        held |= {_identity(p) for p in client.metric_points(run_id, key, timeout_s=timeout_s)}
    return held


def spooled_runs(root: Path) -> list[RunSpool]:
    if not root.is_dir():
        return []
    return [RunSpool(root, entry.name) for entry in sorted(root.iterdir()) if entry.is_dir() and not entry.name.startswith(".")]


def deliver_spool(root: Path, client: TrackingClient, timeout_s: float = 10.0, uploader: Any = None) -> DeliveryReport:
    """Deliver every run's pending metrics and artifacts under `root` (the agent's and the CLI's entry)."""
    total = DeliveryReport()
    for run in spooled_runs(root):
        try:
            total.add(run.deliver(client, timeout_s=timeout_s, uploader=uploader))
        except DeliveryError as exc:
            log.info("spool of run %s: delivery paused: %s", run.run_id, exc)
            total.pending += run.pending_count() or 1
    return total
