"""The agent: reconciles the queue with SLURM, one tick at a time, and submits what the policy allows.

One tick:
1. take (or renew) the agent lease of this cluster in the store: one agent per cluster;
2. ask SLURM about every job of ours with ONE `squeue` call (plus ONE `sacct` call only for
   sweeps squeue no longer shows);
3. record what happened, in ONE transaction (states, GPU-seconds, trial counts, best metric);
4. ask the policy which queued sweeps start now, and submit them:
   claim (QUEUED -> SUBMITTING, committed) -> sbatch -> record the job ids.

Crash safety: a sweep left SUBMITTING by a killed agent is reconciled against SLURM by its
job name (`orch.<sweep_id>`) before anything is submitted again; a submit is repeated only
when SLURM has no job of that name and no sbatch of the dead agent is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cluster.adaptors.slurm import JobRecord, QueueJob, held_after_failed_launch, parse_duration_s
from cluster.slurm.job_spec import sweep_id_of, sweep_job_name
from cluster.slurm.submitit_backend import CRASH_ENV
from orchestrator.kernel.config.models import QueueSettings
from orchestrator.kernel.states import ON_CLUSTER, JobState, SweepState, sweep_state_from_jobs
from orchestrator.login.queue import policy
from orchestrator.login.queue.rows import JobUpdate, SweepRow, SweepUpdate, TrialRow
from orchestrator.login.queue.store import QueueStore

HOLD_RELEASED = "slurm_hold_released"  # the event of a sweep whose job SLURM held after a failed launch
MAX_SUBMITS_PER_TICK = 20
DEFER_S = 30.0  # a deferred submit waits this long (or at least a tick) before its next try
T = TypeVar("T")
# Tests: SIGKILL at a named point: claimed, submitted (and "sbatch", inside the submit: submitit_backend)


class SubmitRefused(Exception):
    """SLURM (or the sweep itself) refused the submit: the sweep fails with this reason."""


class SubmitDeferred(Exception):
    """The submit could not happen now for a reason that passes (the tracking server did not answer): the
    sweep goes back to the queue with this reason, and is tried again once `DEFER_S` have passed."""


@dataclass(frozen=True)
class TrialCounts:
    done: int
    running: int
    pending: int
    best: float | None
    rows: tuple[TrialRow, ...] = ()


class ClusterPort(Protocol):
    """What the agent needs of the cluster (SlurmPort on a real one)."""

    def snapshot(self) -> list[QueueJob]: ...  # ONE squeue call
    def history(self, names: Sequence[str]) -> list[JobRecord]: ...  # ONE sacct call
    def submit(self, bundle: str) -> list[str]: ...
    def submit_in_flight(self, bundle: str) -> bool: ...
    def cancel(self, job_ids: Sequence[str]) -> None: ...
    def adopt(self, bundle: str, job_ids: Sequence[str]) -> list[str]: ...  # finish and record a killed agent's submit
    def close_runs(self, row: SweepRow) -> int: ...  # MLflow runs still RUNNING of an ended sweep -> KILLED
    def deliver_tracking(self, row: SweepRow) -> int: ...  # nodes_reach_server: false -> deliver the spool
    def release(self, job_ids: Sequence[str]) -> None: ...  # jobs SLURM held after a failed launch
    def trials(self, row: SweepRow) -> TrialCounts | None: ...


@dataclass
class TickReport:
    submitted: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)  # SUBMITTING sweeps found in SLURM (no resubmit)
    resubmitted: list[str] = field(default_factory=list)
    changed: int = 0
    zombies_closed: int = 0
    released: int = 0
    delivered: int = 0  # spooled metric points delivered for sweeps whose nodes never reach MLflow
    cluster_calls: int = 0
    cluster_s: float = 0.0
    total_s: float = 0.0
    skipped: str | None = None

    @property
    def own_s(self) -> float:
        return self.total_s - self.cluster_s


def holder_name(pid: int | None = None) -> str:
    """`host:pid:start-time`: names this agent process uniquely (a reused pid has another start time)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def holder_is_dead(holder: str) -> bool:
    """True only for a holder on THIS host whose process is gone: a crashed agent's restart takes over
    at once instead of waiting for the lease to expire. Holders elsewhere are judged by expiry only."""
    host, _, rest = holder.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return str(_start_ticks(int(pid))) != ticks


def _start_ticks(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Agent:
    store: QueueStore
    cluster: ClusterPort
    settings: QueueSettings
    cluster_name: str
    holder: str
    clock: Callable[[], float] = time.time
    lease_s: float = 0.0  # default: 6 ticks
    _deferred_until: dict[str, float] = field(default_factory=dict, repr=False)  # sweep id -> next submit try

    def _crash_point(self, name: str) -> None:
        if os.environ.get(CRASH_ENV) == name:
            os.kill(os.getpid(), signal.SIGKILL)

    def _timed(self, report: TickReport, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            report.cluster_calls += 1
            report.cluster_s += time.perf_counter() - started

    def tick(self) -> TickReport:
        started = time.perf_counter()
        report = TickReport()
        now = self.clock()
        ttl = self.lease_s or 6 * self.settings.tick_s
        if not self.store.acquire_lease(self.cluster_name, self.holder, ttl, now):
            holder = self.store.lease_holder(self.cluster_name, now)
            if not (
                holder and holder_is_dead(holder) and self.store.take_over_lease(self.cluster_name, holder, self.holder, ttl, now)
            ):
                report.skipped = f"another agent holds the lease: {holder}"
                report.total_s = time.perf_counter() - started
                return report
        live = self.store.sweeps(ON_CLUSTER)
        jobs: list[QueueJob] = self._timed(report, self.cluster.snapshot) if live or self._queued_exists() else []
        by_sweep: dict[str, list[QueueJob]] = {}
        for job in jobs:
            sweep_id = sweep_id_of(job.name)
            if sweep_id:
                by_sweep.setdefault(sweep_id, []).append(job)
        unseen = [row for row in live if row.sweep_id not in by_sweep]
        history: dict[str, list[JobRecord]] = {}
        if unseen:
            records: list[JobRecord] = self._timed(
                report, lambda: self.cluster.history([sweep_job_name(r.sweep_id) for r in unseen])
            )
            for record in records:
                sweep_id = sweep_id_of(record.name)
                if sweep_id:
                    history.setdefault(sweep_id, []).append(record)

        updates: list[SweepUpdate] = []
        for row in live:
            if row.state == SweepState.SUBMITTING:
                self._settle_submitting(row, by_sweep.get(row.sweep_id), history.get(row.sweep_id), report)
                continue
            update = self._observe(row, by_sweep.get(row.sweep_id), history.get(row.sweep_id))
            if update is not None:
                updates.append(update)
            report.delivered += self.cluster.deliver_tracking(row)
        self._cancel_leftovers(by_sweep, {row.sweep_id for row in live}, report)
        # A node that failed while the job launched: SLURM requeues the job HELD; ours go on elsewhere.
        # Only this queue's live sweeps: a direct `orch submit` on the same cluster is `orch status`'s to release.
        held = {
            j.job_id.partition("_")[0]: (row.sweep_id, j.reason)
            for row in live
            for j in by_sweep.get(row.sweep_id, [])
            if held_after_failed_launch(j.state, j.reason)
        }
        if held:
            self._timed(report, lambda: self.cluster.release(sorted(held)))
            report.released += len(held)
            self.store.note(
                [
                    (sid, HOLD_RELEASED, f"job {job} was held by SLURM ({reason}): released")
                    for job, (sid, reason) in held.items()
                ],
                now,
            )
        if updates:
            self.store.apply(updates, now)
            report.changed += sum(1 for u in updates if u.state is not None)
            rows = {row.sweep_id: row for row in live}
            for update in updates:  # zombie runs: attempts that died without a word never stay RUNNING
                if update.state is not None and update.state.terminal:
                    report.delivered += self.cluster.deliver_tracking(rows[update.sweep_id])  # the last spooled points first
                    report.zombies_closed += self.cluster.close_runs(rows[update.sweep_id])
        self._start_what_policy_allows(now, report)
        report.total_s = time.perf_counter() - started
        return report

    def _queued_exists(self) -> bool:
        counts = self.store.count()
        return counts.get(SweepState.QUEUED.value, 0) > 0 or counts.get(SweepState.CANCELLED.value, 0) > 0

    # ------------------------------------------------------------------ reconcile
    def _settle_submitting(
        self, row: SweepRow, jobs: list[QueueJob] | None, records: list[JobRecord] | None, report: TickReport
    ) -> None:
        """A sweep claimed for submit whose submit may or may not have reached SLURM (crash window)."""
        found = [j.job_id for j in jobs] if jobs else [r.job_id for r in records or []]
        if found:
            moved = self.cluster.adopt(row.bundle, _job_ids(found))
            detail = "found in SLURM by its job name" + (f"; submit finished, released ({', '.join(moved)})" if moved else "")
            self.store.record_submitted(row.sweep_id, _job_ids(found), self.clock(), detail)
            report.reconciled.append(row.sweep_id)
            return
        if self.cluster.submit_in_flight(row.bundle):
            return  # an sbatch of the previous agent is still running: look again next tick
        self._submit(row, report, resubmit=True)

    def _observe(self, row: SweepRow, jobs: list[QueueJob] | None, records: list[JobRecord] | None) -> SweepUpdate | None:
        if jobs:
            states = [j.state for j in jobs]
            restarts = max(j.restarts for j in jobs)
            job_updates = _per_job([(j.job_id, j.state, j.elapsed_s) for j in jobs])
            reasons = sorted({j.reason for j in jobs if j.reason and j.reason != "None"})
        elif records:
            states = [r.state for r in records]
            restarts = 0
            job_updates = _per_job([(r.job_id, r.state, parse_duration_s(r.elapsed)) for r in records])
            reasons = []
        else:
            return SweepUpdate(row.sweep_id, reason="SLURM no longer knows its jobs (accounting lag?)") if row.job_ids else None
        # None: a state we cannot classify (a newer SLURM's): the sweep keeps its state, never ends on it.
        state = sweep_state_from_jobs(states, restarts)
        counts = self.cluster.trials(row) if state is not None and (state == SweepState.RUNNING or state.terminal) else None
        return SweepUpdate(
            row.sweep_id,
            state=state if state is not None and state != row.state else None,
            jobs=job_updates,
            trials=(counts.done, counts.running, counts.pending) if counts else None,
            best_metric=counts.best if counts else None,
            reason=", ".join(reasons) if reasons else ("" if row.reason else None),
            event=f"jobs {', '.join(sorted({s.value for s in states}))}" + (f", {restarts} restart(s)" if restarts else ""),
            trial_rows=counts.rows if counts else (),
        )

    def _cancel_leftovers(self, by_sweep: dict[str, list[QueueJob]], live: set[str], report: TickReport) -> None:
        """Jobs still alive of sweeps the queue says are cancelled (cancel raced with a submit)."""
        others = [sid for sid in by_sweep if sid not in live]
        states = self.store.states_of(others)
        doomed = [
            j.job_id
            for sid, jobs in by_sweep.items()
            if states.get(sid) == SweepState.CANCELLED
            for j in jobs
            if not j.state.is_ended
        ]
        if doomed:
            self._timed(report, lambda: self.cluster.cancel(_job_ids(doomed)))

    # ------------------------------------------------------------------ submit
    def _start_what_policy_allows(self, now: float, report: TickReport) -> None:
        queued = self.store.waiting()  # (sweep_id, project, priority, gpus, queued_at, reason): lean, one query
        if not queued:
            return
        waiting_for = self._waiting_for(self.store.after_links({q[0] for q in queued}))
        self._deferred_until = {sid: when for sid, when in self._deferred_until.items() if when > now}
        budgets = {
            name: policy.ProjectBudget(b.weight, b.max_concurrent_gpus, b.gpu_hours_per_week)
            for name, b in self.settings.projects.items()
        }
        usage = self.store.usage(now)
        plan = policy.plan(
            [
                policy.QueuedSweep(sid, project, prio, gpus, at)
                for sid, project, prio, gpus, at, _ in queued
                if sid not in waiting_for and sid not in self._deferred_until
            ],
            policy.Usage(usage.running_gpus, usage.gpu_hours_this_week),
            budgets,
            policy.PolicySettings(self.settings.global_max_gpus, self.settings.aging_per_hour),
            now,
            MAX_SUBMITS_PER_TICK,
        )
        reasons = {**plan.held, **waiting_for}
        changed = [
            SweepUpdate(sid, reason=reasons[sid]) for sid, *_, reason in queued if sid in reasons and reasons[sid] != reason
        ]
        if changed:
            self.store.apply(changed, now)
        for decision in plan.submit:
            detail = f"priority {decision.effective_priority:.2f}, {decision.gpus} GPU(s)"
            if self.store.claim_for_submit(decision.sweep_id, self.clock(), detail):
                self._crash_point("claimed")
                self._submit(self.store.get(decision.sweep_id), report)

    def _waiting_for(self, links: dict[str, list[str]]) -> dict[str, str]:
        """Queued sweeps whose `after` sweeps have not all succeeded -> why they wait."""
        states = self.store.states_of({d for deps in links.values() for d in deps})
        waiting = {}
        for sweep_id, deps in links.items():
            pending = [d for d in deps if states.get(d) != SweepState.SUCCEEDED]
            if pending:
                broken = [d for d in pending if states.get(d) in (SweepState.FAILED, SweepState.CANCELLED)]
                waiting[sweep_id] = (
                    f"waits for {', '.join(pending)}"
                    if not broken
                    else f"waits for {', '.join(broken)}, which ended {states[broken[0]].value}: change its `after` or cancel it"
                )
        return waiting

    def _submit(self, row: SweepRow, report: TickReport, resubmit: bool = False) -> None:
        try:
            job_ids = self._timed(report, lambda: self.cluster.submit(row.bundle))
        except SubmitRefused as exc:
            self.store.fail_submit(row.sweep_id, str(exc), self.clock())
            return
        except SubmitDeferred as exc:
            now = self.clock()
            self.store.defer_submit(row.sweep_id, f"submit deferred: {exc}", now)
            self._deferred_until[row.sweep_id] = now + max(DEFER_S, self.settings.tick_s)
            return
        self._crash_point("submitted")
        self.store.record_submitted(
            row.sweep_id, job_ids, self.clock(), "resubmitted: SLURM had no job of it" if resubmit else ""
        )
        (report.resubmitted if resubmit else report.submitted).append(row.sweep_id)


def _per_job(tasks: Iterable[tuple[str, JobState, float]]) -> tuple[JobUpdate, ...]:
    """One update per submitted job: an array's tasks folded into it (its liveliest state), elapsed = their
    mean, so that the array's GPUs x elapsed = GPUs per task x the tasks' summed time."""
    grouped: dict[str, list[tuple[JobState, float]]] = {}
    for job_id, state, elapsed in tasks:
        grouped.setdefault(job_id.partition("_")[0], []).append((state, elapsed))
    return tuple(
        JobUpdate(job_id, max((s for s, _ in group), key=_state_rank).value, sum(e for _, e in group) / len(group))
        for job_id, group in grouped.items()
    )


def _state_rank(state: JobState) -> int:
    return 3 if state.holds_allocation else 2 if state.is_waiting else 1


def _job_ids(ids: Iterable[str]) -> list[str]:
    """Job ids to record or cancel: array tasks folded into their array job."""
    return sorted({i.partition("_")[0] for i in ids}, key=lambda j: (len(j), j))


__all__ = ["Agent", "ClusterPort", "SubmitDeferred", "SubmitRefused", "TickReport", "TrialCounts"]
