"""Queue at scale: 10,000 sweeps and 100,000 trials in the store.

Measures, on SQLite (default) or PostgreSQL (--url):
1. `orch queue`'s answer on the login node: the listing query + the table it prints (default view:
   50 rows and the per-state counts); its data part against a baseline in the same run that answers the
   same question with the same limit (the same 50 sweeps) without the denormalised trial counts,
   aggregating the trials table for those 50 sweeps;
2. one agent tick with 9,000 queued and 300 live sweeps: its own work (reconcile, one transaction,
   the policy over every queued sweep, claims), the cluster query excluded (a prepared squeue
   snapshot stands in for it), against a baseline tick that polls SLURM once per live sweep.

    python bench/bench_queue_scale.py [--url postgresql://...] [--sweeps 10000] [--trials 100000]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402

from cluster.adaptors.slurm import JobRecord, QueueJob  # noqa: E402
from orchestrator.kernel.config.models import ProjectBudgetConfig, QueueSettings  # noqa: E402
from orchestrator.kernel.states import JobState, SweepState  # noqa: E402
from orchestrator.login.queue.agent import Agent, TrialCounts  # noqa: E402
from orchestrator.login.queue.rows import SweepRow  # noqa: E402
from orchestrator.login.queue.store import QueueStore, jobs_table, sweeps_table, trials_table  # noqa: E402

PROJECTS = ("avae", "avae3d", "hvae")
LIVE = 300


def fill(store: QueueStore, n_sweeps: int, n_trials: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    now = time.time()
    sweeps, jobs = [], []
    for i in range(n_sweeps):
        state = SweepState.RUNNING if i < LIVE else SweepState.SUCCEEDED if i < LIVE + 700 else SweepState.QUEUED
        sweep_id = f"sweep-{i:05d}"
        sweeps.append(
            {
                "sweep_id": sweep_id,
                "project": PROJECTS[i % 3],
                "name": f"s{i % 50}",
                "cluster": "bench",
                "bundle": f"/b/{sweep_id}",
                "priority": rng.randint(0, 20),
                "state": state.value,
                "gpus": 1,
                "config_hash": f"{i:064d}",
                "metric": "val_loss",
                "mode": "min",
                "queued_at": now - rng.uniform(0, 7 * 86400),
                "updated_at": now,
                "job_ids": f'["{1000 + i}"]' if state != SweepState.QUEUED else "[]",
                "submit_count": 0,
                "trials_done": 0,
                "trials_running": 0,
                "trials_pending": 10,
                "gpu_seconds": 0.0,
                "reason": "",
            }
        )
        if state != SweepState.QUEUED:
            jobs.append(
                {
                    "job_id": str(1000 + i),
                    "sweep_id": sweep_id,
                    "project": PROJECTS[i % 3],
                    "state": "RUNNING",
                    "gpus": 1,
                    "elapsed_s": 600.0,
                    "submitted_at": now,
                    "updated_at": now,
                }
            )
    trials = [
        {
            "sweep_id": f"sweep-{t % n_sweeps:05d}",
            "trial_id": f"t{t // n_sweeps:05d}",
            "state": "pending",
            "epoch": 0,
            "metric": None,
            "updated_at": now,
        }
        for t in range(n_trials)
    ]
    with store.engine.begin() as conn:
        for table, rows in ((sweeps_table, sweeps), (jobs_table, jobs), (trials_table, trials)):
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])


def listing_answer(store: QueueStore) -> str:
    """What `orch queue` does on the login node (orchestrator.login.queue.service.listing on this store), and
    the table it prints on the laptop."""
    from orchestrator.kernel.states import TERMINAL
    from orchestrator.laptop.queue_cli import queue_table
    from orchestrator.login.queue.service import queued
    from orchestrator.login.wire import AgentLease, QueueListing

    rows = store.sweeps([s for s in SweepState if s not in TERMINAL], limit=50, finished_since=time.time() - 86400)
    answer = QueueListing(
        sweeps=[queued(r) for r in rows],
        counts=store.count(),
        shown=len(rows),
        agent=AgentLease(lease_holder=None, last_tick=None),
    )
    out = io.StringIO()
    Console(file=out, width=200).print(queue_table(answer))
    return out.getvalue()


def listing_data(store: QueueStore) -> int:
    """The data of `orch queue`'s default view (no table): the 50 rows shown and the per-state counts."""
    from orchestrator.kernel.states import TERMINAL

    rows = store.sweeps([s for s in SweepState if s not in TERMINAL], limit=50, finished_since=time.time() - 86400)
    return len(rows) + len(store.count())


def listing_baseline(store: QueueStore) -> int:
    """The same question with the same limit, answered without the denormalised counts: the same 50 sweeps,
    their trial counts aggregated from the trials table, and the per-state counts."""
    from orchestrator.kernel.states import TERMINAL

    wanted = [s.value for s in SweepState if s not in TERMINAL]
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(sweeps_table)
            .where(sa.or_(sweeps_table.c.state.in_(wanted), sweeps_table.c.finished_at >= time.time() - 86400))
            .order_by(sweeps_table.c.priority.desc(), sweeps_table.c.queued_at, sweeps_table.c.sweep_id)
            .limit(50)
        ).all()
        ids = [row.sweep_id for row in rows]
        counts = conn.execute(
            sa.select(trials_table.c.sweep_id, trials_table.c.state, sa.func.count())
            .where(trials_table.c.sweep_id.in_(ids))
            .group_by(trials_table.c.sweep_id, trials_table.c.state)
        ).all()
        per_state = conn.execute(sa.select(sweeps_table.c.state, sa.func.count()).group_by(sweeps_table.c.state)).all()
    return len(rows) + len(counts) + len(per_state)


def listing_unbounded_baseline(store: QueueStore) -> int:
    """A different, bigger question (kept for the earlier figure): trial counts of EVERY sweep, every
    sweep that is not succeeded, no limit."""
    with store.engine.connect() as conn:
        counts = conn.execute(
            sa.select(trials_table.c.sweep_id, trials_table.c.state, sa.func.count()).group_by(
                trials_table.c.sweep_id, trials_table.c.state
            )
        ).all()
        rows = conn.execute(
            sa.select(sweeps_table).where(sweeps_table.c.state != "succeeded").order_by(sweeps_table.c.priority.desc())
        ).all()
    return len(counts) + len(rows)


class SnapshotCluster:
    """The cluster port with a prepared squeue answer (the one cluster query is not the agent's work)."""

    def __init__(self, live: list[SweepRow]) -> None:
        self.jobs = [QueueJob(r.job_ids[0], f"orch.{r.sweep_id}", JobState.RUNNING, 660.0, 0, "None") for r in live]
        self.polls = 0

    def snapshot(self) -> list[QueueJob]:
        return self.jobs

    def poll_one(self, job_id: str) -> QueueJob:
        self.polls += 1  # a baseline agent's `squeue -j ID` / `sacct -j ID` per job
        return next(j for j in self.jobs if j.job_id == job_id)

    def history(self, names: list[str]) -> list[JobRecord]:
        return []

    def submit(self, bundle: str) -> list[str]:
        return []

    def submit_in_flight(self, bundle: str) -> bool:
        return False

    def cancel(self, job_ids: list[str]) -> None:
        pass

    def adopt(self, bundle: str, job_ids: list[str]) -> list[str]:
        return []

    def trials(self, row: SweepRow) -> TrialCounts | None:
        return None

    def deliver_tracking(self, row: SweepRow) -> int:
        return 0

    def release(self, job_ids: Sequence[str]) -> None:
        self.released = [*getattr(self, "released", []), *job_ids]

    def close_runs(self, row: SweepRow) -> int:
        return 0


def timed(call, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="a PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--sweeps", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = QueueStore(args.url or f"sqlite:///{tmp}/queue.db")
        with store.engine.begin() as conn:
            for table in ("orch_trials", "orch_jobs", "orch_events", "orch_sweep_after", "orch_sweeps"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        began = time.perf_counter()
        fill(store, args.sweeps, args.trials)
        print(
            f"store: {store.backend}, {args.sweeps} sweeps, {args.trials} trials, filled in {time.perf_counter() - began:.1f} s"
        )

        listing_s = timed(lambda: listing_answer(store), args.repeats)
        data_s = timed(lambda: listing_data(store), args.repeats)
        baseline_s = timed(lambda: listing_baseline(store), args.repeats)
        unbounded_s = timed(lambda: listing_unbounded_baseline(store), args.repeats)
        print(f"orch queue answer (query + table): {listing_s * 1000:.1f} ms (target < 300 ms)")
        print(
            f"same question, same limit of 50, data only: ours {data_s * 1000:.1f} ms, baseline aggregating the trials "
            f"of those 50 {baseline_s * 1000:.1f} ms; ratio baseline/ours {baseline_s / data_s:.2f}x"
        )
        print(f"(unbounded aggregate over every sweep, a different question: {unbounded_s * 1000:.1f} ms)")

        live = store.sweeps([SweepState.RUNNING])
        cluster = SnapshotCluster(live)
        settings = QueueSettings(
            global_max_gpus=LIVE + 20,
            aging_per_hour=1.0,
            projects={p: ProjectBudgetConfig(weight=w) for p, w in zip(PROJECTS, (2, 1, 1))},
        )
        agent = Agent(store, cluster, settings, "bench", "bench-agent")  # type: ignore[arg-type]

        def submit(bundle: str) -> list[str]:  # the new job shows up in the next snapshot, as in squeue
            job_id = str(900_000 + len(cluster.jobs))
            cluster.jobs.append(QueueJob(job_id, f"orch.{Path(bundle).name}", JobState.PENDING, 0.0, 0, "Priority"))
            return [job_id]

        cluster.submit = submit  # type: ignore[method-assign]
        reports = []
        for _ in range(args.repeats):
            reports.append(agent.tick())
        own = statistics.median(r.own_s for r in reports)
        calls = max(r.cluster_calls for r in reports[1:]) if len(reports) > 1 else reports[0].cluster_calls
        print(
            f"agent tick: {own * 1000:.1f} ms of its own work (target < 100 ms), {calls} cluster call(s) per tick "
            f"(first tick submitted {len(reports[0].submitted)}, later ticks {sum(len(r.submitted) for r in reports[1:])})"
        )
        poll_s = timed(lambda: [cluster.poll_one(r.job_ids[0]) for r in live], 3)
        print(
            f"baseline per-job polling: {len(live)} cluster calls per tick ({poll_s * 1000:.1f} ms of lookups here; on a "
            f"real cluster each is a slurmctld RPC); ratio calls baseline/ours {len(live) / max(calls, 1):.0f}x"
        )
        store.close()


if __name__ == "__main__":
    main()
