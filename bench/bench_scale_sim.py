"""Planning past this machine: the queue agent driving a large simulated cluster (issue 14).

A discrete-event simulation with a SIMULATED clock: simulated hours pass in real seconds.

What is real: the agent (`orchestrator.login.queue.agent.Agent`, its tick unchanged), the policy
(`orchestrator.login.queue.policy`) and the queue store (`QueueStore` on SQLite in a temp dir, the
database work in this process). Where they read the time (`time.time()` in the store and the agent,
the agent's `clock`) they read the simulated clock.

What is simulated: SLURM, behind the agent's cluster port (`ClusterPort`): a cluster of G GPUs that
starts PENDING jobs in submit order wherever they fit (first fit, no backfill reservation), keeps ended
jobs in `squeue --states=all` for MinJobAge (300 s) and in sacct after, and preempts running jobs at
random (Poisson, a rate per GPU-hour of our running jobs): a preempted job goes back to PENDING
(restart count + 1), loses the work since its last checkpoint, pays the start cost again, and the
preemptor holds its GPUs for a while (exponential, mean `--preemptor-min`). Each sweep is one job of
`gpus` GPUs running T trials of a fixed length, `gpus` at a time:
run time = start (16 s) + ceil(T / gpus) x trial length + tail (4 s) (start and tail as measured on the
local cluster, docs/benchmarks.md "Efficiency"). The trial counts and rows the agent reads through
`ClusterPort.trials` (on a real cluster: the sweep folder's trials.json) are made from the job's progress
(one epoch a minute). Sweeps arrive as a Poisson stream sized to `--load` of the cluster (or all at
once with `--load 0`).

What is NOT run: SLURM (no slurmctld, squeue, sacct, sbatch), Ray, Tune, MLflow, the shared
filesystem, ssh. So the agent's CPU below is its own Python + SQLite work; the port's work (the
simulated scheduler, making the trial rows) is measured apart with time.process_time() and subtracted.
On a real cluster each port call costs more (an squeue/sacct/sbatch RPC to slurmctld, a file read on
the shared filesystem): those costs are counted here as calls, not timed.

Reported per scale: the agent's CPU per tick and per trial completed, the port calls per simulated
minute (SLURM queries: squeue, sacct, sbatch, scancel, scontrol release; the rest: trial-file reads,
MLflow hooks), and the queue latency (a sweep's queueing -> its job's first start, split into the
queue's part, queueing -> sbatch, and SLURM's, sbatch -> start).

Defaults: 100 and 250 GPUs (5,000 and 12,500 trials, ~3 min real on a shared 2-core box). The issue's
scale, 1,000 GPUs and 50,000 trials (2,500 sweeps x 20), is `--scales 100,250,1000`: about 14 min real on
that box (~11 min of it the 1,000-GPU run), so it is not the default. The agent ticks every 10 s, the
default of `queue.tick_s` (QueueSettings), as the real agent does.

    python bench/bench_scale_sim.py                       # 100 and 250 GPUs (workload sized for 1,000 / 2,500 sweeps)
    python bench/bench_scale_sim.py --scales 100,250,1000 # adds 1,000 GPUs and 50,000 trials (~14 min)
    python bench/bench_scale_sim.py --scales 1000 --preempt-per-gpu-hours 20 --tick-s 30
    python bench/bench_scale_sim.py --gpus 1000 --sweeps 2500 --trials-per-sweep 20 --trial-minutes 10 \\
        --gpus-per-sweep 4 --checkpoint-min 5 --load 0.9 --seed 0
"""

from __future__ import annotations

import argparse
import bisect
import functools
import heapq
import itertools
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.adaptors.slurm import JobRecord, QueueJob  # noqa: E402
from cluster.slurm.job_spec import sweep_job_name  # noqa: E402
from orchestrator.kernel.config.models import ProjectBudgetConfig, QueueSettings  # noqa: E402
from orchestrator.kernel.states import JobState, SweepState, TrialState  # noqa: E402
from orchestrator.login.queue import agent as agent_module  # noqa: E402
from orchestrator.login.queue import store as store_module  # noqa: E402
from orchestrator.login.queue.agent import Agent, TrialCounts  # noqa: E402
from orchestrator.login.queue.rows import NewSweep, SweepRow, TrialRow  # noqa: E402
from orchestrator.login.queue.store import QueueStore  # noqa: E402

EPOCH = 1_800_000_000.0  # simulated time 0, as a Unix time
PROJECTS = ("avae", "avae3d", "hvae")
WEIGHTS = (2.0, 1.0, 1.0)
SLURM_CALLS = ("snapshot", "history", "submit", "cancel", "release")  # each one slurmctld RPC on a real cluster
INF = float("inf")


# ---------------------------------------------------------------------------------------------- clock
class SimClock:
    """The simulated wall clock (a Unix time)."""

    def __init__(self) -> None:
        self.now = EPOCH

    def time(self) -> float:
        return self.now


class SimTime:
    """Stands in for the `time` module inside the queue code: `time()` is simulated, the rest real."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def simulated_time(clock: SimClock) -> Iterator[None]:
    fake = SimTime(clock)
    with mock.patch.object(store_module, "time", fake), mock.patch.object(agent_module, "time", fake):
        yield


# ---------------------------------------------------------------------------------------------- workload
@dataclass(frozen=True)
class Workload:
    gpus: int
    sweeps: int
    trials_per_sweep: int
    gpus_per_sweep: int
    trial_s: float
    start_s: float
    tail_s: float
    checkpoint_s: float  # 0: no checkpoint inside a trial (a preempted trial restarts)
    preempt_per_gpu_hours: float  # one preemption per this many GPU-hours of our running jobs; 0: none
    preemptor_s: float
    load: float  # offered load (fraction of the cluster); 0: every sweep queued at time 0
    tick_s: float
    min_job_age_s: float
    max_sim_s: float
    seed: int

    @property
    def rounds(self) -> int:
        return math.ceil(self.trials_per_sweep / self.gpus_per_sweep)

    @property
    def work_s(self) -> float:
        return self.rounds * self.trial_s

    @property
    def job_s(self) -> float:
        return self.start_s + self.work_s + self.tail_s

    @property
    def trials(self) -> int:
        return self.sweeps * self.trials_per_sweep

    @property
    def epochs(self) -> int:
        return max(1, round(self.trial_s / 60.0))


def arrivals(w: Workload, rng: random.Random) -> list[tuple[float, NewSweep]]:
    """(queued at, sweep): a Poisson stream offering `load` of the cluster's GPUs, or all at time 0."""
    rate = w.load * w.gpus / (w.gpus_per_sweep * w.job_s) if w.load > 0 else 0.0  # sweeps per second
    at, out = EPOCH, []
    for i in range(w.sweeps):
        if rate:
            at += rng.expovariate(rate)
        sweep_id = f"sim-{i:06d}"
        new = NewSweep(
            sweep_id=sweep_id,
            project=PROJECTS[i % len(PROJECTS)],
            name=f"s{i % 50}",
            cluster="sim",
            bundle=f"/sim/{sweep_id}",
            priority=rng.randint(0, 20),
            gpus=w.gpus_per_sweep,
            config_hash=f"{i:064d}",
            metric="val_loss",
            mode="min",
        )
        out.append((at, new))
    return out


# ---------------------------------------------------------------------------------------------- SLURM
@dataclass
class SimJob:
    job_id: str
    sweep_id: str
    gpus: int
    trials: int
    submitted_at: float
    state: JobState = JobState.PENDING
    progress_s: float = 0.0  # compute kept (checkpointed) from earlier attempts
    attempt: int = 0
    attempt_start: float = 0.0
    first_start: float | None = None
    ended_at: float | None = None
    restarts: int = 0
    last_elapsed_s: float = 0.0

    @property
    def order(self) -> tuple[float, int]:
        return (self.submitted_at, int(self.job_id))


def _port_call(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count a port method's calls and time its own CPU and wall (to subtract from the agent's tick)."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def counted(self: SimSlurm, *args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                self.calls[name] += 1
                self.cpu_s += time.process_time() - cpu
                self.wall_s += time.perf_counter() - wall

        return counted

    return wrap


@dataclass
class SimStats:
    preemptions: int = 0
    lost_gpu_s: float = 0.0  # compute thrown away by preemptions (since the last checkpoint)
    restart_gpu_s: float = 0.0  # start costs paid again after preemptions
    held_gpu_s: float = 0.0  # GPU-seconds our jobs held (starts and tails included)


class SimSlurm:
    """The agent's cluster port on a simulated SLURM (see the module docstring)."""

    def __init__(self, w: Workload, rng: random.Random) -> None:
        self.w = w
        self.rng = rng
        self.now = EPOCH
        self.free = w.gpus
        self.jobs: dict[str, SimJob] = {}  # every job ever
        self.by_name: dict[str, SimJob] = {}
        self.visible: dict[str, SimJob] = {}  # what `squeue --states=all` shows
        self.pending: list[SimJob] = []  # submit order
        self.running: dict[str, SimJob] = {}
        self.events: list[tuple[float, int, str, str, int]] = []  # (at, seq, kind, job id, attempt)
        self.seq = itertools.count()
        self.ids = itertools.count(1000)
        self.preempt_rate = w.gpus / (w.preempt_per_gpu_hours * 3600.0) if w.preempt_per_gpu_hours > 0 else 0.0
        self.next_preempt = self._next_preempt()
        self.calls: Counter[str] = Counter()
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.stats = SimStats()
        self.completed = 0

    # ---- the scheduler
    def _next_preempt(self) -> float:
        return self.now + self.rng.expovariate(self.preempt_rate) if self.preempt_rate else INF

    def advance_to(self, t: float) -> None:
        while True:
            next_event = self.events[0][0] if self.events else INF
            at = min(next_event, self.next_preempt)
            if at > t:
                break
            self.now = at
            if self.next_preempt <= next_event:
                self._preempt_one()
                self.next_preempt = self._next_preempt()
            else:
                _, _, kind, job_id, attempt = heapq.heappop(self.events)
                if kind == "end":
                    self._end(self.jobs[job_id], attempt)
                else:  # a preemptor's job ended: its GPUs are free again
                    self.free += attempt
            self._schedule()
        self.now = max(self.now, t)

    def _schedule(self) -> None:
        """Start pending jobs in submit order wherever they fit."""
        i = 0
        while i < len(self.pending) and self.free > 0:
            job = self.pending[i]
            if job.gpus <= self.free:
                self.pending.pop(i)
                self._start(job)
            else:
                i += 1

    def _start(self, job: SimJob) -> None:
        job.state, job.attempt_start = JobState.RUNNING, self.now
        job.first_start = self.now if job.first_start is None else job.first_start
        self.free -= job.gpus
        self.running[job.job_id] = job
        end = self.now + self.w.start_s + (self.w.work_s - job.progress_s) + self.w.tail_s
        heapq.heappush(self.events, (end, next(self.seq), "end", job.job_id, job.attempt))

    def _end(self, job: SimJob, attempt: int) -> None:
        if attempt != job.attempt or job.state != JobState.RUNNING:
            return  # the end of an attempt a preemption cut short
        job.state, job.ended_at, job.progress_s = JobState.COMPLETED, self.now, self.w.work_s
        job.last_elapsed_s = self.now - job.attempt_start
        self.stats.held_gpu_s += job.gpus * job.last_elapsed_s
        self.free += job.gpus
        del self.running[job.job_id]
        self.completed += 1

    def _preempt_one(self) -> None:
        """Thinning: a preemption lands on a uniformly drawn GPU; it hits our job if the GPU is one of its."""
        gpu = self.rng.randrange(self.w.gpus)
        for job in self.running.values():
            if gpu < job.gpus:
                self._preempt(job)
                return
            gpu -= job.gpus

    def _preempt(self, job: SimJob) -> None:
        total = self._compute_done(job)
        kept = self._checkpointed(total)
        self.stats.preemptions += 1
        self.stats.lost_gpu_s += job.gpus * (total - kept)
        self.stats.restart_gpu_s += job.gpus * self.w.start_s
        self.stats.held_gpu_s += job.gpus * (self.now - job.attempt_start)
        job.last_elapsed_s = self.now - job.attempt_start
        job.progress_s, job.state = kept, JobState.PENDING
        job.restarts += 1
        job.attempt += 1
        del self.running[job.job_id]
        bisect.insort(self.pending, job, key=lambda j: j.order)
        held_s = self.rng.expovariate(1.0 / self.w.preemptor_s) if self.w.preemptor_s > 0 else 0.0
        heapq.heappush(self.events, (self.now + held_s, next(self.seq), "preemptor", "", job.gpus))

    def _compute_done(self, job: SimJob) -> float:
        if job.state != JobState.RUNNING:
            return job.progress_s
        this_attempt = min(max(0.0, self.now - job.attempt_start - self.w.start_s), self.w.work_s - job.progress_s)
        return job.progress_s + this_attempt

    def _checkpointed(self, total: float) -> float:
        """Finished trials are kept; a running trial back to its last checkpoint."""
        rounds = math.floor(total / self.w.trial_s)
        into = total - rounds * self.w.trial_s
        step = self.w.checkpoint_s
        return rounds * self.w.trial_s + (math.floor(into / step) * step if step > 0 else 0.0)

    def trials_done(self) -> int:
        return sum(self._trial_split(job)[0] for job in self.jobs.values())

    def _trial_split(self, job: SimJob) -> tuple[int, int, float]:
        """(trials done, trials in the current round, seconds into the current round)."""
        total = self._compute_done(job)
        rounds = min(self.w.rounds, math.floor(total / self.w.trial_s + 1e-9))
        done = min(job.trials, rounds * job.gpus)
        return done, min(job.gpus, job.trials - done), total - rounds * self.w.trial_s

    # ---- the port (orchestrator.login.queue.agent.ClusterPort)
    @_port_call("snapshot")
    def snapshot(self) -> list[QueueJob]:
        cutoff = self.now - self.w.min_job_age_s
        out = []
        for job_id, job in list(self.visible.items()):
            if job.ended_at is not None and job.ended_at < cutoff:
                del self.visible[job_id]
                continue
            out.append(
                QueueJob(job.job_id, sweep_job_name(job.sweep_id), job.state, self._elapsed(job), job.restarts, _reason(job))
            )
        return out

    @_port_call("history")
    def history(self, names: Sequence[str]) -> list[JobRecord]:
        return [
            JobRecord(job.job_id, name, job.state, "sim-node", _hms(self._elapsed(job)), 0, _reason(job), f"gres/gpu={job.gpus}")
            for name in names
            if (job := self.by_name.get(name)) is not None
        ]

    @_port_call("submit")
    def submit(self, bundle: str) -> list[str]:
        sweep_id = Path(bundle).name
        job = SimJob(str(next(self.ids)), sweep_id, self.w.gpus_per_sweep, self.w.trials_per_sweep, self.now)
        self.jobs[job.job_id] = self.visible[job.job_id] = self.by_name[sweep_job_name(sweep_id)] = job
        self.pending.append(job)
        self._schedule()
        return [job.job_id]

    @_port_call("submit_in_flight")
    def submit_in_flight(self, bundle: str) -> bool:
        return False

    @_port_call("cancel")
    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is not None and job.state == JobState.PENDING:
                self.pending.remove(job)
                job.state, job.ended_at = JobState.CANCELLED, self.now

    @_port_call("adopt")
    def adopt(self, bundle: str, job_ids: Sequence[str]) -> list[str]:
        return []

    @_port_call("release")
    def release(self, job_ids: Sequence[str]) -> None:
        pass

    @_port_call("deliver_tracking")
    def deliver_tracking(self, row: SweepRow) -> int:
        return 0

    @_port_call("close_runs")
    def close_runs(self, row: SweepRow) -> int:
        return 0

    @_port_call("trials")
    def trials(self, row: SweepRow) -> TrialCounts | None:
        job = self.jobs.get(row.job_ids[0]) if row.job_ids else None
        if job is None:
            return None
        done, current, into = self._trial_split(job)
        computing = job.state == JobState.RUNNING and self.now >= job.attempt_start + self.w.start_s
        epoch_s = self.w.trial_s / self.w.epochs
        epoch = min(self.w.epochs, math.floor(into / epoch_s))
        rows = []
        for i in range(job.trials):
            if i < done:
                rows.append(TrialRow(f"t{i:04d}", TrialState.SUCCEEDED.value, self.w.epochs, _metric(i, self.w.epochs)))
            elif i < done + current and (computing or epoch > 0):
                state = TrialState.RUNNING if computing else TrialState.PAUSED
                rows.append(TrialRow(f"t{i:04d}", state.value, epoch, _metric(i, epoch) if epoch else None))
            else:
                rows.append(TrialRow(f"t{i:04d}", TrialState.PENDING.value, 0, None))
        metrics = [r.metric for r in rows if r.metric is not None]
        running = sum(r.state == TrialState.RUNNING.value for r in rows)
        return TrialCounts(done, running, job.trials - done - running, min(metrics) if metrics else None, tuple(rows))

    def _elapsed(self, job: SimJob) -> float:
        return self.now - job.attempt_start if job.state == JobState.RUNNING else job.last_elapsed_s


def _reason(job: SimJob) -> str:
    if job.state == JobState.PENDING:
        return "BeginTime" if job.restarts else "Resources"
    return "None"


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _metric(trial: int, epoch: int) -> float:
    return round(0.2 + (trial * 7919 % 97) / 97.0 / (1 + epoch), 6)


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class Result:
    w: Workload
    wall_s: float = 0.0
    sim_s: float = 0.0
    ticks: int = 0
    tick_cpu_s: list[float] = field(default_factory=list)  # the agent's own CPU per tick (port excluded)
    tick_wall_s: list[float] = field(default_factory=list)  # the same, wall
    port_cpu_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    trials_done: int = 0
    succeeded: int = 0
    queue_wait_s: list[float] = field(default_factory=list)  # queued -> sbatch
    slurm_wait_s: list[float] = field(default_factory=list)  # sbatch -> first start
    latency_s: list[float] = field(default_factory=list)  # queued -> first start
    never_started: int = 0  # queued before the end, never started
    not_arrived: int = 0  # not yet queued when the time cap ended the run
    on_cluster: list[int] = field(default_factory=list)  # our jobs in SLURM (pending + running) at each tick
    stats: SimStats = field(default_factory=SimStats)


def simulate(w: Workload, progress: Callable[[str], None]) -> Result:
    rng = random.Random(w.seed)
    incoming = arrivals(w, rng)
    queued_at = {new.sweep_id: at for at, new in incoming}
    clock = SimClock()
    sim = SimSlurm(w, random.Random(w.seed + 1))
    settings = QueueSettings(
        tick_s=w.tick_s,
        global_max_gpus=w.gpus,
        aging_per_hour=1.0,
        projects={p: ProjectBudgetConfig(weight=wt) for p, wt in zip(PROJECTS, WEIGHTS)},
    )
    result = Result(w)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, simulated_time(clock):
        store = QueueStore(f"sqlite:///{tmp}/queue.db")
        agent = Agent(store, sim, settings, "sim", "sim-agent", clock=clock.time)  # type: ignore[arg-type]
        t, arrived, next_report = EPOCH, 0, EPOCH + 3600.0
        while True:
            while arrived < len(incoming) and incoming[arrived][0] <= t:
                at, new = incoming[arrived]
                sim.advance_to(at)
                clock.now = at
                store.add(new, now=at)
                arrived += 1
            sim.advance_to(t)
            clock.now = t
            cpu, wall, port_cpu, port_wall = time.process_time(), time.perf_counter(), sim.cpu_s, sim.wall_s
            agent.tick()
            result.tick_cpu_s.append(time.process_time() - cpu - (sim.cpu_s - port_cpu))
            result.tick_wall_s.append(time.perf_counter() - wall - (sim.wall_s - port_wall))
            result.on_cluster.append(len(sim.pending) + len(sim.running))
            if arrived == len(incoming) and sim.completed == len(incoming) and _all_succeeded(store, len(incoming)):
                break
            if t - EPOCH >= w.max_sim_s:
                break
            if t >= next_report:
                progress(
                    f"  {w.gpus} GPUs: {(t - EPOCH) / 3600:.0f} h simulated, {sim.completed}/{w.sweeps} sweeps done, "
                    f"{time.perf_counter() - began:.0f} s real"
                )
                next_report += 3600.0
            t += w.tick_s
        result.succeeded = store.count().get(SweepState.SUCCEEDED.value, 0)
        store.close()
    result.wall_s = time.perf_counter() - began
    result.sim_s = t - EPOCH
    result.ticks = len(result.tick_cpu_s)
    result.port_cpu_s = sim.cpu_s
    result.calls = sim.calls
    result.trials_done = sim.trials_done()
    result.stats = sim.stats
    for job in sim.running.values():  # attempts still running at the cap
        sim.stats.held_gpu_s += job.gpus * (sim.now - job.attempt_start)
    for sweep_id, at in queued_at.items():
        job = sim.by_name.get(sweep_job_name(sweep_id))
        if at > t:
            result.not_arrived += 1
            continue
        if job is None or job.first_start is None:
            result.never_started += 1
            continue
        result.queue_wait_s.append(job.submitted_at - at)
        result.slurm_wait_s.append(job.first_start - job.submitted_at)
        result.latency_s.append(job.first_start - at)
    return result


def _all_succeeded(store: QueueStore, n: int) -> bool:
    return store.count().get(SweepState.SUCCEEDED.value, 0) == n


# ---------------------------------------------------------------------------------------------- report
def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _lat(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) / 60:.1f} / {pct(values, 0.95) / 60:.1f} / {max(values) / 60:.1f}"


def rows_of(r: Result) -> list[tuple[str, str]]:
    w, minutes = r.w, max(r.sim_s / 60.0, 1e-9)
    slurm = sum(r.calls[c] for c in SLURM_CALLS)
    other = sum(r.calls.values()) - slurm
    ms = [c * 1000 for c in r.tick_cpu_s]
    agent_cpu = sum(r.tick_cpu_s)
    trained_gpu_s = r.trials_done * w.trial_s
    return [
        ("workload", f"{w.sweeps} x {w.trials_per_sweep} trials, {w.gpus_per_sweep} GPU/sweep"),
        ("trials completed", f"{r.trials_done:,} of {w.trials:,} ({r.succeeded} sweeps succeeded)"),
        ("simulated time (h)", f"{r.sim_s / 3600:.2f}"),
        ("real time (s)", f"{r.wall_s:.0f}"),
        ("agent ticks", f"{r.ticks:,} (every {w.tick_s:g} s)"),
        ("our jobs in SLURM: mean/peak", f"{statistics.fmean(r.on_cluster):.0f} / {max(r.on_cluster)}"),
        ("agent CPU/tick ms: mean/p95/max", f"{statistics.fmean(ms):.1f} / {pct(ms, 0.95):.1f} / {max(ms):.1f}"),
        ("agent wall/tick ms: mean (own)", f"{statistics.fmean(r.tick_wall_s) * 1000:.1f}"),
        ("agent CPU share of one core", f"{agent_cpu / max(r.sim_s, 1e-9) * 100:.2f} %"),
        ("agent CPU per trial (ms)", f"{agent_cpu / max(r.trials_done, 1) * 1000:.1f}"),
        ("SLURM queries/min", f"{slurm / minutes:.1f}"),
        (
            "  squeue / sacct / sbatch per min",
            f"{r.calls['snapshot'] / minutes:.2f} / {r.calls['history'] / minutes:.3f} / {r.calls['submit'] / minutes:.2f}",
        ),
        ("other port calls/min", f"{other / minutes:.0f}"),
        ("  trial-file reads/min", f"{r.calls['trials'] / minutes:.0f}"),
        ("latency min: med/p95/max", _lat(r.latency_s)),
        ("  queued -> sbatch", _lat(r.queue_wait_s)),
        ("  sbatch -> start (SLURM)", _lat(r.slurm_wait_s)),
        ("queued, not started / not queued", f"{r.never_started} / {r.not_arrived} (at the end)"),
        ("preemptions", f"{r.stats.preemptions}"),
        (
            "GPU-h lost / restarts",
            f"{r.stats.lost_gpu_s / 3600:.1f} / {r.stats.restart_gpu_s / 3600:.2f}",
        ),
        ("GPU-h trained / held", f"{trained_gpu_s / 3600:,.0f} / {r.stats.held_gpu_s / 3600:,.0f}"),
        ("cluster utilisation", f"{r.stats.held_gpu_s / (w.gpus * max(r.sim_s, 1e-9)) * 100:.1f} %"),
        ("port CPU (excluded, s)", f"{r.port_cpu_s:.1f}"),
    ]


def table(results: Sequence[Result]) -> str:
    columns = [rows_of(r) for r in results]
    heads = ["", *(f"{r.w.gpus} GPUs" for r in results)]
    lines = [[label, *(col[i][1] for col in columns)] for i, (label, _) in enumerate(columns[0])]
    widths = [max(len(x) for x in col) for col in zip(heads, *lines)]
    out = [" | ".join(h.ljust(n) for h, n in zip(heads, widths)), "-+-".join("-" * n for n in widths)]
    out += [" | ".join(c.ljust(n) for c, n in zip(line, widths)) for line in lines]
    return "\n".join(out)


def scaling(results: Sequence[Result]) -> str:
    """Where the design stops scaling, extrapolated: the tick's CPU against the jobs in SLURM (a least-squares
    line over the scales run), and the submit ceiling of MAX_SUBMITS_PER_TICK against the submits needed."""
    lines = []
    w = results[-1].w
    if len(results) >= 2:
        xs = [statistics.fmean(r.on_cluster) for r in results]
        ys = [statistics.fmean(r.tick_cpu_s) for r in results]
        slope, intercept = statistics.linear_regression(xs, ys)
        if slope > 0:
            full = (w.tick_s - intercept) / slope
            lines.append(
                f"tick CPU ~ {intercept * 1000:.1f} ms + {slope * 1000:.3f} ms x jobs in SLURM (fit over {len(results)} "
                f"scales): a tick would fill its {w.tick_s:g} s interval at ~{full:,.0f} jobs in SLURM "
                f"(~{full * w.gpus_per_sweep:,.0f} GPUs at {w.gpus_per_sweep} GPU/sweep and this job length), "
                f"half of one core at ~{full / 2:,.0f} jobs"
            )
    ceiling = agent_module.MAX_SUBMITS_PER_TICK * 60.0 / w.tick_s
    needed = w.gpus / (w.gpus_per_sweep * w.job_s / 60.0)
    lines.append(
        f"submit ceiling: {agent_module.MAX_SUBMITS_PER_TICK} sbatch per tick = {ceiling:.0f}/min; a full cluster of "
        f"{w.gpus} GPUs needs {needed:.1f}/min with {w.job_s / 60:.1f}-min jobs of {w.gpus_per_sweep} GPUs "
        f"(it binds at ~{ceiling / needed * w.gpus:,.0f} GPUs with these jobs, or at {w.gpus} GPUs with jobs under "
        f"{needed / ceiling * w.job_s:.0f} s)"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def workload_at(args: argparse.Namespace, gpus: int) -> Workload:
    """The workload of --gpus/--sweeps scaled to `gpus` (the same simulated duration at every scale)."""
    sweeps = max(1, round(args.sweeps * gpus / args.gpus))
    return Workload(
        gpus=gpus,
        sweeps=sweeps,
        trials_per_sweep=args.trials_per_sweep,
        gpus_per_sweep=args.gpus_per_sweep,
        trial_s=args.trial_minutes * 60.0,
        start_s=args.start_s,
        tail_s=args.tail_s,
        checkpoint_s=args.checkpoint_min * 60.0,
        preempt_per_gpu_hours=args.preempt_per_gpu_hours,
        preemptor_s=args.preemptor_min * 60.0,
        load=args.load,
        tick_s=args.tick_s,
        min_job_age_s=args.min_job_age_s,
        max_sim_s=args.max_sim_hours * 3600.0,
        seed=args.seed,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    default_tick = QueueSettings().tick_s
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--gpus", type=int, default=1000, help="the reference scale the workload is sized for")
    p.add_argument("--sweeps", type=int, default=2500, help="sweeps at --gpus (scaled with the GPUs at other scales)")
    p.add_argument("--trials-per-sweep", type=int, default=20)
    p.add_argument("--gpus-per-sweep", type=int, default=4)
    p.add_argument("--trial-minutes", type=float, default=10.0)
    p.add_argument("--start-s", type=float, default=16.0, help="a job's start to its first trial")
    p.add_argument("--tail-s", type=float, default=4.0, help="a job's last trial to its end")
    p.add_argument("--checkpoint-min", type=float, default=5.0, help="checkpoint period inside a trial (0: none)")
    p.add_argument("--preempt-per-gpu-hours", type=float, default=200.0, help="one preemption per N GPU-hours (0: none)")
    p.add_argument("--preemptor-min", type=float, default=60.0, help="mean time a preemptor holds the GPUs")
    p.add_argument("--load", type=float, default=0.9, help="offered load, fraction of the cluster (0: all queued at once)")
    p.add_argument("--tick-s", type=float, default=default_tick, help=f"agent tick (the agent's default: {default_tick:g} s)")
    p.add_argument("--min-job-age-s", type=float, default=300.0, help="SLURM MinJobAge: ended jobs stay in squeue")
    p.add_argument("--max-sim-hours", type=float, default=48.0)
    p.add_argument(
        "--scales",
        default="100,250",
        help="comma-separated GPU counts to run, the workload scaled from --gpus/--sweeps (1000: ~11 min real here)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    if max(scales) < args.gpus:
        print(
            f"note: the largest scale run is {max(scales)} GPUs ({round(args.sweeps * max(scales) / args.gpus)} sweeps); "
            f"{args.gpus} GPUs and {args.sweeps * args.trials_per_sweep:,} trials: add it to --scales "
            "(~11 min real on a shared 2-core box)",
            file=sys.stderr,
        )
    results = []
    for gpus in scales:
        w = workload_at(args, gpus)
        print(
            f"simulating {gpus} GPUs: {w.sweeps} sweeps x {w.trials_per_sweep} trials of {args.trial_minutes:g} min, "
            f"{w.gpus_per_sweep} GPUs each (job {w.job_s / 60:.1f} min), load {w.load:g}, tick {w.tick_s:g} s, "
            f"a preemption per {w.preempt_per_gpu_hours:g} GPU-h",
            file=sys.stderr,
            flush=True,
        )
        results.append(simulate(w, lambda line: print(line, file=sys.stderr, flush=True)))
        print(table(results[-1:]), file=sys.stderr, flush=True)  # this scale's figures, as soon as they are known
    print(table(results))
    print()
    print(scaling(results))
    print(
        "\nagent CPU: the real Agent.tick (policy + SQLite store, in this process) minus the simulated port's own "
        "work;\nnot included: slurmctld's time per query, sbatch/ssh, reading trials.json on a shared filesystem, MLflow."
    )


if __name__ == "__main__":
    main()
