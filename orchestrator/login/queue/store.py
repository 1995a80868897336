"""The queue's one data-access module: the same schema on SQLite (default) and PostgreSQL.

Every write is one transaction; state changes are compare-and-set (`WHERE state = old`), so two
processes (the agent and a CLI command, or two agents on a shared PostgreSQL) can never both
move a sweep out of the same state. Nothing here talks to SLURM or MLflow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from orchestrator.kernel.errors import QueueError
from orchestrator.kernel.states import JobState, SweepState, check_transition
from orchestrator.login.queue.rows import NewSweep, SweepRow, SweepUpdate, TrialRow, Usage

SCHEMA_VERSION = 1
WEEK_S = 7 * 24 * 3600.0
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "sshfs",
        "9p",
        "afs",
        "panfs",
        "wekafs",
        "fuse.beegfs",
        "fuse.cephfs",
        "ncpfs",
        "davfs",
        "fuse.s3fs",
    }
)

metadata = sa.MetaData()
sweeps_table = sa.Table(
    "orch_sweeps",
    metadata,
    sa.Column("sweep_id", sa.String(200), primary_key=True),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("cluster", sa.String(100), nullable=False),
    sa.Column("bundle", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("gpus", sa.Integer, nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(3), nullable=False),
    sa.Column("queued_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("job_ids", sa.Text, nullable=False, default="[]"),
    sa.Column("submit_count", sa.Integer, nullable=False, default=0),
    sa.Column("trials_done", sa.Integer, nullable=False, default=0),
    sa.Column("trials_running", sa.Integer, nullable=False, default=0),
    sa.Column("trials_pending", sa.Integer, nullable=False, default=0),
    sa.Column("gpu_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("best_metric", sa.Float),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Index("ix_orch_sweeps_state", "state"),
    sa.Index("ix_orch_sweeps_hash", "config_hash"),
)
deps_table = sa.Table(
    "orch_sweep_after",
    metadata,
    sa.Column("sweep_id", sa.String(200), sa.ForeignKey("orch_sweeps.sweep_id"), primary_key=True),
    sa.Column("after_id", sa.String(200), sa.ForeignKey("orch_sweeps.sweep_id"), primary_key=True),
)
jobs_table = sa.Table(
    "orch_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("sweep_id", sa.String(200), sa.ForeignKey("orch_sweeps.sweep_id"), nullable=False, index=True),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("gpus", sa.Integer, nullable=False),
    sa.Column("elapsed_s", sa.Float, nullable=False, default=0.0),
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
trials_table = sa.Table(
    "orch_trials",
    metadata,
    sa.Column("sweep_id", sa.String(200), sa.ForeignKey("orch_sweeps.sweep_id"), primary_key=True),
    sa.Column("trial_id", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, default=0),
    sa.Column("metric", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
)
events_table = sa.Table(
    "orch_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("sweep_id", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
lease_table = sa.Table(
    "orch_agent_lease",
    metadata,
    sa.Column("cluster", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
meta_table = sa.Table(
    "orch_meta",
    metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


_PG_UPDATE_JOBS = sa.text(
    "UPDATE orch_jobs SET state = v.state, elapsed_s = v.elapsed_s, updated_at = :now "
    "FROM unnest(CAST(:ids AS text[]), CAST(:states AS text[]), CAST(:elapsed AS double precision[])) "
    "AS v(job_id, state, elapsed_s) WHERE orch_jobs.job_id = v.job_id"
)


def network_filesystem(path: Path, mounts_text: str | None = None) -> str | None:
    """The type of the network filesystem `path` lives on, or None when it is local."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, parts[2]
    return best_type if best_type in NETWORK_FILESYSTEMS or best_type.startswith("nfs") else None


def _sqlite_file(url: sa.engine.URL) -> Path | None:
    return (
        Path(os.path.expanduser(url.database))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        else None
    )


class QueueStore:
    """The queue on one database. `url`: `sqlite:////path/queue.db` or `postgresql://user:pw@host/db`."""

    def __init__(self, url: str, *, check_filesystem: bool = True) -> None:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise QueueError(
                "queue.store", f"'{url}' is not a database URL", "use sqlite:////local/path/queue.db or postgresql://..."
            ) from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise QueueError("queue.store", f"'{backend}' databases are not supported", "use SQLite (local disk) or PostgreSQL")
        sqlite_file = _sqlite_file(parsed)
        if sqlite_file is not None:
            parsed = parsed.set(database=str(sqlite_file))
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            fstype = network_filesystem(sqlite_file.parent) if check_filesystem else None
            if fstype:
                raise QueueError(
                    "queue.store",
                    f"{sqlite_file} is on a network filesystem ({fstype}), where SQLite's "
                    "locking is unreliable and the queue could be corrupted",
                    "put the SQLite file on the login node's local disk, or use PostgreSQL (postgresql://...)",
                )
        if backend == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg2")
        connect_args = {"timeout": 30} if backend == "sqlite" else {"connect_timeout": 10}
        self.url = parsed
        self.engine = sa.create_engine(parsed, connect_args=connect_args, future=True)
        if backend == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                if conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema")).scalar() is None:
                    conn.execute(meta_table.insert().values(key="schema", value=str(SCHEMA_VERSION)))
        except sa.exc.OperationalError as exc:
            raise QueueError(
                "queue.store",
                f"cannot open the queue database ({str(exc.orig).strip().splitlines()[0]})",
                "check queue.store: the server, user and password, or the file's folder",
            ) from None

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------ queueing
    def add(self, new: NewSweep, now: float | None = None) -> SweepRow:
        now = time.time() if now is None else now
        with self._tx() as conn:
            if conn.execute(sa.select(sweeps_table.c.sweep_id).where(sweeps_table.c.sweep_id == new.sweep_id)).first():
                raise QueueError("sweep", f"sweep {new.sweep_id} is already queued", "submit it under a new id")
            self._check_after(conn, new.sweep_id, new.after)
            state = SweepState.HELD if new.held else SweepState.QUEUED
            conn.execute(
                sweeps_table.insert().values(
                    sweep_id=new.sweep_id,
                    project=new.project,
                    name=new.name,
                    cluster=new.cluster,
                    bundle=new.bundle,
                    priority=new.priority,
                    state=state.value,
                    gpus=new.gpus,
                    config_hash=new.config_hash,
                    metric=new.metric,
                    mode=new.mode,
                    queued_at=now,
                    updated_at=now,
                    job_ids="[]",
                    submit_count=0,
                    trials_done=0,
                    trials_running=0,
                    trials_pending=0,
                    gpu_seconds=0.0,
                    reason="",
                )
            )
            for after in new.after:
                conn.execute(deps_table.insert().values(sweep_id=new.sweep_id, after_id=after))
            self._event(conn, now, new.sweep_id, "queued", f"priority {new.priority}" + (" held" if new.held else ""))
        return self.get(new.sweep_id)

    def duplicates(self, config_hash: str) -> list[SweepRow]:
        """Sweeps queued before from the same sweep file, project file, profile and code."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(sweeps_table)
                    .where(sweeps_table.c.config_hash == config_hash)
                    .where(sweeps_table.c.state != SweepState.CANCELLED.value)
                )
                .mappings()
                .all()
            )
        return [SweepRow.of(r) for r in rows]

    def resolve(self, ref: str) -> str:
        """A sweep id, or the newest sweep with that name."""
        with self.engine.connect() as conn:
            if conn.execute(sa.select(sweeps_table.c.sweep_id).where(sweeps_table.c.sweep_id == ref)).first():
                return ref
            newest = conn.execute(
                sa.select(sweeps_table.c.sweep_id)
                .where(sweeps_table.c.name == ref)
                .order_by(sweeps_table.c.queued_at.desc())
                .limit(1)
            ).scalar()
        if newest is None:
            raise QueueError("sweep", f"no sweep '{ref}' in the queue", "list them with: orch queue --cluster NAME")
        return newest

    def set_priority(self, sweep_id: str, priority: int, now: float | None = None) -> SweepRow:
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, sweep_id)
            if row.state.terminal:
                raise QueueError(
                    "sweep", f"sweep {sweep_id} has {row.state.value}; its priority no longer matters", "queue it again"
                )
            conn.execute(
                sweeps_table.update().where(sweeps_table.c.sweep_id == sweep_id).values(priority=priority, updated_at=now)
            )
            self._event(conn, now, sweep_id, "priority", f"{row.priority} -> {priority}")
        return self.get(sweep_id)

    def set_after(self, sweep_id: str, after: Sequence[str], now: float | None = None) -> SweepRow:
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, sweep_id)
            if row.state not in (SweepState.QUEUED, SweepState.HELD):
                raise QueueError(
                    "sweep",
                    f"sweep {sweep_id} is {row.state.value}; only a waiting sweep can wait for another",
                    "set `after` before it starts",
                )
            self._check_after(conn, sweep_id, after)
            conn.execute(deps_table.delete().where(deps_table.c.sweep_id == sweep_id))
            for dep in after:
                conn.execute(deps_table.insert().values(sweep_id=sweep_id, after_id=dep))
            self._event(conn, now, sweep_id, "after", ",".join(after) or "none")
        return self.get(sweep_id)

    def hold(self, sweep_id: str, now: float | None = None) -> SweepRow:
        return self._move(sweep_id, SweepState.QUEUED, SweepState.HELD, "held", now)

    def release(self, sweep_id: str, now: float | None = None) -> SweepRow:
        return self._move(sweep_id, SweepState.HELD, SweepState.QUEUED, "released", now)

    def note(self, notes: Sequence[tuple[str, str, str]], now: float | None = None) -> None:
        """Events that change no state: (sweep id, kind, detail) each, e.g. the agent releasing a SLURM hold."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            for sweep_id, kind, detail in notes:
                self._event(conn, now, sweep_id, kind, detail)

    def cancel(self, sweep_id: str, now: float | None = None) -> SweepRow:
        """Mark cancelled; returns the row as it was, so the caller can scancel its jobs."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, sweep_id)
            if row.state.terminal:
                raise QueueError("sweep", f"sweep {sweep_id} has already {row.state.value}", "nothing to cancel")
            conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .values(state=SweepState.CANCELLED.value, updated_at=now, finished_at=now, reason="cancelled by the user")
            )
            self._event(conn, now, sweep_id, "cancelled", f"was {row.state.value}")
        return row

    def _move(self, sweep_id: str, old: SweepState, new: SweepState, kind: str, now: float | None) -> SweepRow:
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, sweep_id)
            if row.state != old:
                raise QueueError(
                    "sweep", f"sweep {sweep_id} is {row.state.value}, not {old.value}", f"only a {old.value} sweep can be {kind}"
                )
            conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .where(sweeps_table.c.state == old.value)
                .values(state=new.value, updated_at=now)
            )
            self._event(conn, now, sweep_id, kind, "")
        return self.get(sweep_id)

    # ------------------------------------------------------------------ the agent's writes
    def claim_for_submit(self, sweep_id: str, now: float | None = None, detail: str = "") -> bool:
        """QUEUED -> SUBMITTING, committed BEFORE sbatch; False when someone else moved it first."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            done = conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .where(sweeps_table.c.state == SweepState.QUEUED.value)
                .values(
                    state=SweepState.SUBMITTING.value, updated_at=now, submit_count=sweeps_table.c.submit_count + 1, reason=""
                )
            )
            if done.rowcount != 1:
                return False
            self._event(conn, now, sweep_id, "submitting", detail)
        return True

    def record_submitted(self, sweep_id: str, job_ids: Sequence[str], now: float | None = None, detail: str = "") -> None:
        """SUBMITTING -> SUBMITTED with the job ids SLURM gave (or that reconciling found)."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, sweep_id)
            if row.state != SweepState.SUBMITTING:
                return  # cancelled meanwhile, or already recorded by an earlier tick
            conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .where(sweeps_table.c.state == SweepState.SUBMITTING.value)
                .values(state=SweepState.SUBMITTED.value, job_ids=json.dumps(list(job_ids)), submitted_at=now, updated_at=now)
            )
            for job_id in job_ids:
                if not conn.execute(sa.select(jobs_table.c.job_id).where(jobs_table.c.job_id == job_id)).first():
                    conn.execute(
                        jobs_table.insert().values(
                            job_id=job_id,
                            sweep_id=sweep_id,
                            project=row.project,
                            state=JobState.PENDING.value,
                            gpus=row.gpus,
                            elapsed_s=0.0,
                            submitted_at=now,
                            updated_at=now,
                        )
                    )
            self._event(conn, now, sweep_id, "submitted", ",".join(job_ids) + (f" ({detail})" if detail else ""))

    def fail_submit(self, sweep_id: str, reason: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx() as conn:
            conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .where(sweeps_table.c.state == SweepState.SUBMITTING.value)
                .values(state=SweepState.FAILED.value, reason=reason[:2000], updated_at=now, finished_at=now)
            )
            self._event(conn, now, sweep_id, "submit-failed", reason[:2000])

    def defer_submit(self, sweep_id: str, reason: str, now: float | None = None) -> None:
        """SUBMITTING -> QUEUED: a submit that could not happen now (nothing reached SLURM) is tried again later."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            done = conn.execute(
                sweeps_table.update()
                .where(sweeps_table.c.sweep_id == sweep_id)
                .where(sweeps_table.c.state == SweepState.SUBMITTING.value)
                .values(state=SweepState.QUEUED.value, reason=reason[:2000], updated_at=now)
            )
            if done.rowcount == 1:
                self._event(conn, now, sweep_id, "submit-deferred", reason[:2000])

    def apply(self, updates: Iterable[SweepUpdate], now: float | None = None) -> None:
        """Everything one tick learned, in ONE transaction, with as few statements as it takes:
        one read of the sweeps, one batched job update, one GPU-seconds update, and a write per
        sweep only where something changed."""
        now = time.time() if now is None else now
        updates = list(updates)
        if not updates:
            return
        with self._tx() as conn:
            rows = self._rows(conn, {u.sweep_id for u in updates})
            job_params: list[dict[str, Any]] = []
            for update in updates:
                row = rows.get(update.sweep_id)
                if row is None:
                    raise QueueError(
                        "sweep", f"no sweep '{update.sweep_id}' in the queue", "list them with: orch queue --cluster NAME"
                    )
                values: dict[str, Any] = {}
                if update.state is not None and update.state != row.state and not row.state.terminal:
                    check_transition(row.sweep_id, row.state, update.state)
                    values["state"] = update.state.value
                    if update.state.terminal:
                        values["finished_at"] = now
                    self._event(conn, now, row.sweep_id, update.state.value, update.event or "")
                if update.trial_rows:
                    self._upsert_trials(conn, row.sweep_id, update.trial_rows, now)
                if update.trials is not None and update.trials != (row.trials_done, row.trials_running, row.trials_pending):
                    values.update(trials_done=update.trials[0], trials_running=update.trials[1], trials_pending=update.trials[2])
                if update.best_metric is not None and update.best_metric != row.best_metric:
                    values["best_metric"] = update.best_metric
                if update.reason is not None and update.reason[:2000] != row.reason:
                    values["reason"] = update.reason[:2000]
                job_params += [{"b_job": job.job_id, "b_state": job.state, "b_elapsed": job.elapsed_s} for job in update.jobs]
                if values:
                    values["updated_at"] = now
                    conn.execute(sweeps_table.update().where(sweeps_table.c.sweep_id == row.sweep_id).values(**values))
            if job_params:
                self._update_jobs(conn, job_params, now)
                touched = sorted({u.sweep_id for u in updates if u.jobs})
                used = (
                    sa.select(sa.func.coalesce(sa.func.sum(jobs_table.c.gpus * jobs_table.c.elapsed_s), 0.0))
                    .where(jobs_table.c.sweep_id == sweeps_table.c.sweep_id)
                    .scalar_subquery()
                )
                conn.execute(sweeps_table.update().where(sweeps_table.c.sweep_id.in_(touched)).values(gpu_seconds=used))

    def _update_jobs(self, conn: sa.Connection, params: list[dict[str, Any]], now: float) -> None:
        """Every job's state and elapsed time: one UPDATE ... FROM (VALUES ...) on PostgreSQL (one round
        trip instead of one per job); an executemany on SQLite, which runs in-process."""
        if self.backend == "postgresql":  # three array parameters: the statement text never changes
            conn.execute(
                _PG_UPDATE_JOBS,
                {
                    "ids": [p["b_job"] for p in params],
                    "states": [p["b_state"] for p in params],
                    "elapsed": [float(p["b_elapsed"]) for p in params],
                    "now": now,
                },
            )
            return
        conn.execute(
            jobs_table.update()
            .where(jobs_table.c.job_id == sa.bindparam("b_job"))
            .values(state=sa.bindparam("b_state"), elapsed_s=sa.bindparam("b_elapsed"), updated_at=now),
            params,
        )

    @staticmethod
    def _upsert_trials(conn: sa.Connection, sweep_id: str, rows: Sequence[TrialRow], now: float) -> None:
        """Insert new trials, update changed ones (one read of the sweep's trials first)."""
        known = {
            r.trial_id: (r.state, r.epoch, r.metric)
            for r in conn.execute(
                sa.select(trials_table.c.trial_id, trials_table.c.state, trials_table.c.epoch, trials_table.c.metric).where(
                    trials_table.c.sweep_id == sweep_id
                )
            )
        }
        fresh = [r for r in rows if r.trial_id not in known]
        if fresh:
            conn.execute(
                trials_table.insert(),
                [
                    {
                        "sweep_id": sweep_id,
                        "trial_id": r.trial_id,
                        "state": r.state,
                        "epoch": r.epoch,
                        "metric": r.metric,
                        "updated_at": now,
                    }
                    for r in fresh
                ],
            )
        for r in rows:
            if r.trial_id in known and known[r.trial_id] != (r.state, r.epoch, r.metric):
                conn.execute(
                    trials_table.update()
                    .where(trials_table.c.sweep_id == sweep_id)
                    .where(trials_table.c.trial_id == r.trial_id)
                    .values(state=r.state, epoch=r.epoch, metric=r.metric, updated_at=now)
                )

    # ------------------------------------------------------------------ reads
    def trials(self, sweep_id: str) -> list[TrialRow]:
        with self.engine.connect() as conn:
            return [
                TrialRow(r.trial_id, r.state, r.epoch, r.metric)
                for r in conn.execute(
                    sa.select(trials_table).where(trials_table.c.sweep_id == sweep_id).order_by(trials_table.c.trial_id)
                )
            ]

    def get(self, sweep_id: str) -> SweepRow:
        with self.engine.connect() as conn:
            return self._row(conn, sweep_id)

    def sweeps(
        self, states: Iterable[SweepState] | None = None, limit: int | None = None, finished_since: float | None = None
    ) -> list[SweepRow]:
        """Sweeps in `states` (default all), highest priority first, then oldest; ONE query (+ one for `after`)."""
        query = sa.select(sweeps_table)
        if states is not None:
            wanted = [s.value for s in states]
            if finished_since is not None:
                query = query.where(sa.or_(sweeps_table.c.state.in_(wanted), sweeps_table.c.finished_at >= finished_since))
            else:
                query = query.where(sweeps_table.c.state.in_(wanted))
        query = query.order_by(sweeps_table.c.priority.desc(), sweeps_table.c.queued_at, sweeps_table.c.sweep_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            deps: dict[str, list[str]] = {}
            for sweep_id, after_id in conn.execute(sa.select(deps_table.c.sweep_id, deps_table.c.after_id)):
                deps.setdefault(sweep_id, []).append(after_id)
        return [SweepRow.of(r, sorted(deps.get(r["sweep_id"], []))) for r in rows]

    def waiting(self) -> list[tuple[str, str, int, int, float, str]]:
        """The QUEUED sweeps as the policy needs them, lean (no row objects): (sweep_id, project,
        priority, gpus, queued_at, reason). ONE query; 10,000 rows in a few milliseconds."""
        with self.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.select(
                        sweeps_table.c.sweep_id,
                        sweeps_table.c.project,
                        sweeps_table.c.priority,
                        sweeps_table.c.gpus,
                        sweeps_table.c.queued_at,
                        sweeps_table.c.reason,
                    ).where(sweeps_table.c.state == SweepState.QUEUED.value)
                )
            ]

    def after_links(self, sweep_ids: Iterable[str] | None = None) -> dict[str, list[str]]:
        query = sa.select(deps_table.c.sweep_id, deps_table.c.after_id)
        with self.engine.connect() as conn:
            links: dict[str, list[str]] = {}
            for sweep_id, after_id in conn.execute(query):
                links.setdefault(sweep_id, []).append(after_id)
        wanted = None if sweep_ids is None else set(sweep_ids)
        return {k: sorted(v) for k, v in links.items() if wanted is None or k in wanted}

    def count(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                state: n
                for state, n in conn.execute(sa.select(sweeps_table.c.state, sa.func.count()).group_by(sweeps_table.c.state))
            }

    def states_of(self, sweep_ids: Iterable[str]) -> dict[str, SweepState]:
        ids = list(sweep_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            return {
                sid: SweepState(state)
                for sid, state in conn.execute(
                    sa.select(sweeps_table.c.sweep_id, sweeps_table.c.state).where(sweeps_table.c.sweep_id.in_(ids))
                )
            }

    def usage(self, now: float | None = None) -> Usage:
        """GPUs of live jobs and GPU-hours used in the last 7 days, per project."""
        now = time.time() if now is None else now
        live = [
            s.value
            for s in (SweepState.SUBMITTING, SweepState.SUBMITTED, SweepState.RUNNING, SweepState.PREEMPTED, SweepState.REQUEUED)
        ]
        with self.engine.connect() as conn:
            running = {
                p: int(n)
                for p, n in conn.execute(
                    sa.select(sweeps_table.c.project, sa.func.sum(sweeps_table.c.gpus))
                    .where(sweeps_table.c.state.in_(live))
                    .group_by(sweeps_table.c.project)
                )
            }
            week = {
                p: float(s) / 3600.0
                for p, s in conn.execute(
                    sa.select(jobs_table.c.project, sa.func.sum(jobs_table.c.gpus * jobs_table.c.elapsed_s))
                    .where(jobs_table.c.updated_at >= now - WEEK_S)
                    .group_by(jobs_table.c.project)
                )
            }
        return Usage(running, week)

    def events(self, sweep_id: str | None = None, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = sa.select(events_table).order_by(events_table.c.id)
        if sweep_id:
            query = query.where(events_table.c.sweep_id == sweep_id)
        if kinds:
            query = query.where(events_table.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ the agent's lease
    def acquire_lease(self, cluster: str, holder: str, ttl_s: float, now: float | None = None) -> bool:
        """One agent per cluster and store: take or renew the lease; False if another live agent holds it."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            current = conn.execute(sa.select(lease_table).where(lease_table.c.cluster == cluster)).mappings().first()
            if current is None:
                try:
                    with conn.begin_nested():
                        conn.execute(lease_table.insert().values(cluster=cluster, holder=holder, expires_at=now + ttl_s))
                    return True
                except sa.exc.IntegrityError:
                    return False
            done = conn.execute(
                lease_table.update()
                .where(lease_table.c.cluster == cluster)
                .where(sa.or_(lease_table.c.holder == holder, lease_table.c.expires_at < now))
                .values(holder=holder, expires_at=now + ttl_s)
            )
            return done.rowcount == 1

    def take_over_lease(self, cluster: str, dead_holder: str, holder: str, ttl_s: float, now: float | None = None) -> bool:
        """Take the lease from a holder known to be dead (compare-and-set on its name)."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            done = conn.execute(
                lease_table.update()
                .where(lease_table.c.cluster == cluster)
                .where(lease_table.c.holder == dead_holder)
                .values(holder=holder, expires_at=now + ttl_s)
            )
            return done.rowcount == 1

    def release_lease(self, cluster: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(lease_table.delete().where(lease_table.c.cluster == cluster).where(lease_table.c.holder == holder))

    def lease_holder(self, cluster: str, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(lease_table).where(lease_table.c.cluster == cluster)).mappings().first()
        return row["holder"] if row and row["expires_at"] >= now else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            if conn.execute(meta_table.update().where(meta_table.c.key == key).values(value=value)).rowcount == 0:
                conn.execute(meta_table.insert().values(key=key, value=value))

    def meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()

    # ------------------------------------------------------------------ helpers
    def _rows(self, conn: sa.Connection, sweep_ids: set[str]) -> dict[str, SweepRow]:
        ids = sorted(sweep_ids)
        found: dict[str, SweepRow] = {}
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                sa.select(sweeps_table).where(sweeps_table.c.sweep_id.in_(ids[start : start + 500]))
            ).mappings():
                found[row["sweep_id"]] = SweepRow.of(row)
        return found

    def _row(self, conn: sa.Connection, sweep_id: str) -> SweepRow:
        row = conn.execute(sa.select(sweeps_table).where(sweeps_table.c.sweep_id == sweep_id)).mappings().first()
        if row is None:
            raise QueueError("sweep", f"no sweep '{sweep_id}' in the queue", "list them with: orch queue --cluster NAME")
        after = [a for (a,) in conn.execute(sa.select(deps_table.c.after_id).where(deps_table.c.sweep_id == sweep_id))]
        return SweepRow.of(row, sorted(after))

    def _check_after(self, conn: sa.Connection, sweep_id: str, after: Sequence[str]) -> None:
        if sweep_id in after:
            raise QueueError("after", f"sweep {sweep_id} cannot wait for itself", "name another sweep")
        known = {a for (a,) in conn.execute(sa.select(sweeps_table.c.sweep_id).where(sweeps_table.c.sweep_id.in_(list(after))))}
        missing = [a for a in after if a not in known]
        if missing:
            raise QueueError(
                "after", f"no sweep {', '.join(missing)} in the queue", "name a queued sweep (orch queue lists them)"
            )
        graph: dict[str, set[str]] = {}
        for sid, dep in conn.execute(sa.select(deps_table.c.sweep_id, deps_table.c.after_id)):
            graph.setdefault(sid, set()).add(dep)
        graph[sweep_id] = set(after)
        cycle = _find_cycle(graph, sweep_id)
        if cycle:
            raise QueueError("after", f"waiting would make a cycle: {' -> '.join(cycle)}", "drop one of these `after` links")

    @staticmethod
    def _event(conn: sa.Connection, now: float, sweep_id: str, kind: str, detail: str) -> None:
        conn.execute(events_table.insert().values(at=now, sweep_id=sweep_id, kind=kind, detail=detail))


def _find_cycle(graph: Mapping[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start through `graph` (sweep -> sweeps it waits for), if any."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in graph.get(node, ()):
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
