"""The metric and artifact spool: what is logged but not yet on the tracking server.

Layout (one folder per MLflow run; the folder may live on a shared filesystem)::

    <spool>/<run_id>/metrics.jsonl   append-only, one metric point a line:
                                     {"q": seq, "k": key, "v": value, "t": timestamp_ms, "s": step}
    <spool>/<run_id>/acked.json      {"offset": bytes delivered, "seq": last seq delivered} (atomic replace)
    <spool>/<run_id>/inflight.json   written before a batch is sent, removed once it is acknowledged
    <spool>/<run_id>/rejected.jsonl  points the server refused for good (bad value, deleted run)
    <spool>/<run_id>/deliver.lock    one deliverer per run at a time (process or agent)
    <spool>/<run_id>/artifacts/<n>/  files to upload, with meta.json {"artifact_path": ...}
    <spool>/<run_id>/status.json     terminal status to set once everything above is delivered
                                     {"status": ..., "end_time": ms, "version": n}; status_delivered.json: the version set

Deferred runs (compute nodes that never reach the server, `MLflowTrialTracker(None, ...)`):
the folder is named by a local key `deferred-<hex>` instead of an MLflow run id, and holds

    run.json          the run descriptor: experiment id, run name, tags (incl. mlflow.parentRunId), params, start time
    server_run.json   {"run_id": ...}: the MLflow run the deliverer created or found for this key
    tags.jsonl        tags set after the start (placement, attempt, error), one JSON object a line
    tags_acked.json   byte offset of tags.jsonl delivered

The deliverer creates the run idempotently (it first looks for a run of the experiment
with the same `orch.sweep_id` + `orch.trial_id` tags, so a lost answer to a create never
makes a second run), records its id, then sends tags, metrics and artifacts, and sets
the status last: a run is FINISHED on the server only when all of it is there.

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import RunStatus
from orchestrator.tracking.client import DeliveryError, MetricPoint, TrackingClient

log = logging.getLogger(__name__)

MAX_POINTS_PER_BATCH = 1000  # MLflow's log_batch limit
DEFERRED_PREFIX = "deferred-"  # spool keys of runs not yet created on the server


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


@dataclass
class DeliveryReport:
    delivered: int = 0
    skipped_duplicates: int = 0
    rejected: int = 0
    artifacts: int = 0
    pending: int = 0  # left for a later attempt (server unreachable)
    runs_created: int = 0  # deferred runs created on the server
    runs_found: int = 0  # deferred runs found on the server (created by an earlier, interrupted delivery)
    statuses: int = 0  # run statuses set

    def add(self, other: DeliveryReport) -> None:
        for name in (
            "delivered",
            "skipped_duplicates",
            "rejected",
            "artifacts",
            "pending",
            "runs_created",
            "runs_found",
            "statuses",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class RunSpool:
    """The spool folder of one run."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id  # the spool key: an MLflow run id, or a deferred run's local key
        self.dir = root / run_id
        self.metrics = self.dir / "metrics.jsonl"
        self.acked = self.dir / "acked.json"
        self.inflight = self.dir / "inflight.json"
        self.rejected = self.dir / "rejected.jsonl"
        self.artifacts = self.dir / "artifacts"
        self.status = self.dir / "status.json"
        self.status_delivered = self.dir / "status_delivered.json"
        self.descriptor = self.dir / "run.json"
        self.server_run = self.dir / "server_run.json"
        self.tags = self.dir / "tags.jsonl"
        self.tags_acked = self.dir / "tags_acked.json"
        self._next_seq: int | None = None

    @property
    def deferred(self) -> bool:
        return self.run_id.startswith(DEFERRED_PREFIX)

    # --- deferred runs and statuses: writer side ------------------------------------------------
    def write_descriptor(self, descriptor: dict[str, Any]) -> None:
        """What the run is (experiment, name, tags, params, start time): written once, before anything else."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.descriptor, json.dumps(descriptor, indent=1, sort_keys=True))

    def read_descriptor(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.descriptor.read_text()))
        except (OSError, ValueError):
            return None

    def append_tags(self, tags: dict[str, str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.tags, "a", encoding="utf-8") as out:
            out.write(json.dumps(tags, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def record_status(self, status: RunStatus, end_time_ms: int | None = None) -> None:
        """The status to set on the server after everything spooled before it is delivered."""
        self.dir.mkdir(parents=True, exist_ok=True)
        version = int((_read_json(self.status) or {}).get("version", 0)) + 1
        write_atomic(self.status, json.dumps({"status": RunStatus(status).value, "end_time": end_time_ms, "version": version}))

    def recorded_status(self) -> RunStatus | None:
        status = (_read_json(self.status) or {}).get("status")
        return RunStatus(status) if status else None

    def last_step(self, key: str) -> int:
        """The largest step spooled for `key` (-1: none): what a deferred run already holds."""
        last = -1
        try:
            with open(self.metrics, encoding="utf-8") as spool:
                for line in spool:
                    try:
                        point = json.loads(line)
                    except ValueError:
                        continue  # a torn last line
                    if point.get("k") == key:
                        last = max(last, int(point.get("s", -1)))
        except FileNotFoundError:
            pass
        return last

    def server_run_id(self) -> str | None:
        """The MLflow run this spool goes to, if known (always, for a non-deferred spool)."""
        if not self.deferred:
            return self.run_id
        return (_read_json(self.server_run) or {}).get("run_id")

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
        if self.deferred and self.server_run_id() is None:
            return True
        return self._metrics_pending() or any(self._artifact_batches()) or self._tags_pending() or self._status_pending()

    def _metrics_pending(self) -> bool:
        try:
            return self.metrics.stat().st_size > self.acked_offset()
        except FileNotFoundError:
            return False

    def _tags_pending(self) -> bool:
        try:
            return self.tags.stat().st_size > int((_read_json(self.tags_acked) or {}).get("offset", 0))
        except FileNotFoundError:
            return False

    def _status_pending(self) -> bool:
        recorded = _read_json(self.status)
        return recorded is not None and recorded.get("version") != (_read_json(self.status_delivered) or {}).get("version")

    def _ack(self, offset: int, seq: int) -> None:
        write_atomic(self.acked, json.dumps({"offset": offset, "seq": seq}), durable=False)

    def _artifact_batches(self) -> list[Path]:
        if not self.artifacts.is_dir():
            return []
        return sorted(p for p in self.artifacts.iterdir() if p.is_dir() and not p.name.startswith("."))

    # --- delivery ------------------------------------------------------------------------
    def deliver(
        self, client: TrackingClient, timeout_s: float = 10.0, uploader: Any = None, hold_status: bool = False
    ) -> DeliveryReport:
        """Send everything pending, batch by batch; stops at the first transient failure.

        Order: the run (deferred spools: found or created), tags, metrics, artifacts, and
        the recorded status last (not at all with `hold_status`). Raises `DeliveryError`
        (transient) after recording progress; returns the report when everything pending
        is delivered. Returns at once if another process holds the run's lock.
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
            run_id = self._ensure_run(client, timeout_s, report)
            if run_id is None:  # a deferred run whose descriptor is not written yet
                report.pending += 1
                return report
            self._deliver_tags(client, run_id, timeout_s)
            self._deliver_metrics(client, run_id, timeout_s, report)
            self._deliver_artifacts(client, run_id, uploader, report)
            if hold_status:
                report.pending += int(self._status_pending())
            else:
                self._deliver_status(client, run_id, timeout_s, report)
        finally:
            lock.release()
        return report

    def _ensure_run(self, client: TrackingClient, timeout_s: float, report: DeliveryReport) -> str | None:
        """The server run of this spool; for a deferred one, found or created exactly once (under the lock)."""
        known = self.server_run_id()
        if known is not None:
            return known
        descriptor = self.read_descriptor()
        if descriptor is None:
            return None
        experiment_id, tags = str(descriptor["experiment_id"]), dict(descriptor.get("tags", {}))
        identity = {key: tags[key] for key in descriptor.get("identity_tags", []) if tags.get(key)}
        # A create whose answer was lost (or a crash before server_run.json) left the run there: find it.
        run_id = client.find_run(experiment_id, identity, timeout_s=timeout_s) if identity else None
        if run_id is None:
            run_id = client.create_run(
                experiment_id, str(descriptor["run_name"]), tags, descriptor.get("start_time"), timeout_s=timeout_s
            )
            report.runs_created += 1
        else:
            report.runs_found += 1
        client.send_params_and_tags(run_id, dict(descriptor.get("params", {})), tags, timeout_s=timeout_s)
        write_atomic(self.server_run, json.dumps({"run_id": run_id}))
        return run_id

    def _deliver_tags(self, client: TrackingClient, run_id: str, timeout_s: float) -> None:
        if not self._tags_pending():
            return
        offset = int((_read_json(self.tags_acked) or {}).get("offset", 0))
        merged: dict[str, str] = {}
        with open(self.tags, "rb") as lines:
            lines.seek(offset)
            for raw in lines:
                if not raw.endswith(b"\n"):
                    break
                merged.update(json.loads(raw))
                offset += len(raw)
        if merged:  # setting a tag twice is harmless: no in-flight bookkeeping needed
            client.send_params_and_tags(run_id, {}, merged, timeout_s=timeout_s)
        write_atomic(self.tags_acked, json.dumps({"offset": offset}), durable=False)

    def _deliver_status(self, client: TrackingClient, run_id: str, timeout_s: float, report: DeliveryReport) -> None:
        recorded = _read_json(self.status)
        if recorded is None or not self._status_pending():
            return
        if self._metrics_pending() or self._artifact_batches() or self._tags_pending():
            return  # written while this delivery ran: the next one sets it
        client.set_status(run_id, RunStatus(recorded["status"]), recorded.get("end_time"), timeout_s=timeout_s)
        write_atomic(self.status_delivered, json.dumps({"version": recorded.get("version")}), durable=False)
        report.statuses += 1

    def _deliver_metrics(self, client: TrackingClient, run_id: str, timeout_s: float, report: DeliveryReport) -> None:
        for _ in range(1_000_000):  # bounded: one batch per turn
            points, end, seq = self.pending_points()
            if not points:
                return
            if self.inflight.exists():
                held = _points_on_server(client, run_id, points, timeout_s)
                fresh = [p for p in points if _identity(p) not in held]
                report.skipped_duplicates += len(points) - len(fresh)
                points = fresh
            if points:
                write_atomic(self.inflight, json.dumps({"end": end, "seq": seq}), durable=False)
                try:
                    client.send_metric_points(run_id, points, timeout_s=timeout_s)
                except DeliveryError as exc:
                    if exc.permanent:
                        with open(self.rejected, "a", encoding="utf-8") as out:
                            out.write(json.dumps({"error": str(exc)[:300], "points": points}) + "\n")
                        log.warning("MLflow run %s refused %d metric points for good: %s", run_id, len(points), exc)
                        report.rejected += len(points)
                    else:
                        if not exc.maybe_sent:
                            self.inflight.unlink(missing_ok=True)
                        raise
                else:
                    report.delivered += len(points)
            self._ack(end, seq)
            self.inflight.unlink(missing_ok=True)

    def _deliver_artifacts(self, client: TrackingClient, run_id: str, uploader: Any, report: DeliveryReport) -> None:
        for batch in self._artifact_batches():
            meta = json.loads((batch / "meta.json").read_text())
            try:
                if uploader is not None:
                    uploader.log_artifacts(run_id, batch / "files", meta["artifact_path"])
                else:
                    client.log_artifacts(run_id, batch / "files", meta["artifact_path"])
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
    """Deliver every run's pending runs, tags, metrics, artifacts and statuses under `root`.

    The agent's and the CLI's entry; idempotent and safe to run concurrently (per-run
    locks). A parent run's recorded status (the sweep's) is set only once none of its
    spooled child runs has anything left.
    """
    total = DeliveryReport()
    runs = spooled_runs(root)
    children: dict[str, list[RunSpool]] = {}
    for run in runs:
        parent = ((run.read_descriptor() or {}).get("tags") or {}).get("mlflow.parentRunId") if run.deferred else None
        if parent:
            children.setdefault(parent, []).append(run)
    # children first, so a parent delivered in the same pass can be closed
    for run in sorted(runs, key=lambda r: r.run_id in children):
        try:
            hold = any(child.has_pending() for child in children.get(run.run_id, []))
            total.add(run.deliver(client, timeout_s=timeout_s, uploader=uploader, hold_status=hold))
        except DeliveryError as exc:
            log.info("spool of run %s: delivery paused: %s", run.run_id, exc)
            total.pending += run.pending_count() or 1
    return total
