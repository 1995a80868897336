"""The agent's tick against a fake cluster (the SLURM boundary faked; the store is real): one
cluster query per tick, the crash windows of a submit, the policy's order, `after`, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.adaptors.slurm import JobRecord, QueueJob
from orchestrator.kernel.config.models import ProjectBudgetConfig, QueueSettings
from orchestrator.kernel.states import JobState, SweepState, sweep_state_from_jobs
from orchestrator.login.queue.agent import DEFER_S, Agent, SubmitDeferred, SubmitRefused, TrialCounts
from orchestrator.login.queue.rows import NewSweep, SweepRow
from orchestrator.login.queue.store import QueueStore


@dataclass
class FakeCluster:
    """SLURM as the agent sees it: jobs by name, one counter per kind of call."""

    jobs: dict[str, QueueJob] = field(default_factory=dict)
    accounting: list[JobRecord] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    defer: dict[str, int] = field(default_factory=dict)  # sweep id -> submits to defer before one goes through
    calls: dict[str, int] = field(default_factory=lambda: {"snapshot": 0, "history": 0, "submit": 0, "cancel": 0})
    next_id: int = 100
    adopted: dict[str, list[str]] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)

    def snapshot(self) -> list[QueueJob]:
        self.calls["snapshot"] += 1
        return list(self.jobs.values())

    def history(self, names: Sequence[str]) -> list[JobRecord]:
        self.calls["history"] += 1
        return [r for r in self.accounting if r.name in names]

    def submit(self, bundle: str) -> list[str]:
        self.calls["submit"] += 1
        sweep_id = Path(bundle).name
        if sweep_id in self.refuse:
            raise SubmitRefused("slurm.partition: invalid partition")
        if self.defer.get(sweep_id, 0) > 0:
            self.defer[sweep_id] -= 1
            raise SubmitDeferred("tracking.uri: nothing listens on 127.0.0.1:5000 (connection refused)")
        self.next_id += 1
        job_id = str(self.next_id)
        self.jobs[job_id] = QueueJob(job_id, f"orch.{sweep_id}", JobState.PENDING, 0.0, 0, "Priority")
        return [job_id]

    def submit_in_flight(self, bundle: str) -> bool:
        return Path(bundle).name in self.in_flight

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.calls["cancel"] += 1
        for job_id in job_ids:
            job = self.jobs[job_id]
            self.jobs[job_id] = QueueJob(job_id, job.name, JobState.CANCELLED, job.elapsed_s, 0, "")

    def deliver_tracking(self, row: SweepRow) -> int:
        return 0

    def release(self, job_ids: Sequence[str]) -> None:
        self.released = [*getattr(self, "released", []), *job_ids]

    def close_runs(self, row: SweepRow) -> int:
        self.closed.append(row.sweep_id)
        return 1

    def adopt(self, bundle: str, job_ids: Sequence[str]) -> list[str]:
        self.adopted[Path(bundle).name] = list(job_ids)
        return []

    def trials(self, row: SweepRow) -> TrialCounts | None:
        return TrialCounts(1, 0, 0, 0.25)

    def set_state(self, sweep_id: str, state: JobState, elapsed_s: float = 0.0, restarts: int = 0) -> None:
        for job_id, job in self.jobs.items():
            if job.name == f"orch.{sweep_id}":
                self.jobs[job_id] = QueueJob(job_id, job.name, state, elapsed_s, restarts, "")

    def names(self) -> list[str]:
        return sorted(j.name for j in self.jobs.values())


def add(
    store: QueueStore,
    sweep_id: str,
    project: str = "p",
    priority: int = 0,
    gpus: int = 1,
    after: tuple[str, ...] = (),
    now: float = 0.0,
) -> None:
    store.add(
        NewSweep(
            sweep_id=sweep_id,
            project=project,
            name=sweep_id,
            cluster="c",
            bundle=f"/bundles/{sweep_id}",
            priority=priority,
            gpus=gpus,
            config_hash=sweep_id,
            metric="m",
            mode="min",
            after=after,
        ),
        now=now,
    )


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    opened = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    yield opened
    opened.close()


def make_agent(store: QueueStore, cluster: FakeCluster, **settings: object) -> Agent:
    clock = iter(range(1000, 10_000_000, 10))
    return Agent(store, cluster, QueueSettings(**settings), "c", "agent-test", clock=lambda: float(next(clock)))


def test_one_cluster_query_per_tick_and_states_follow_slurm(store: QueueStore) -> None:
    cluster = FakeCluster()
    for i in range(5):
        add(store, f"s{i}")
    agent = make_agent(store, cluster, global_max_gpus=3)
    report = agent.tick()
    assert sorted(report.submitted) == ["s0", "s1", "s2"] and cluster.calls["snapshot"] == 1
    cluster.set_state("s0", JobState.RUNNING, 3600)
    cluster.set_state("s1", JobState.COMPLETED, 60)
    cluster.set_state("s2", JobState.PENDING, restarts=1)
    report = agent.tick()
    assert cluster.calls["snapshot"] == 2 and cluster.calls["history"] == 0
    assert {s: store.get(s).state for s in ("s0", "s1", "s2")} == {
        "s0": SweepState.RUNNING,
        "s1": SweepState.SUCCEEDED,
        "s2": SweepState.REQUEUED,
    }
    assert report.submitted == ["s3"]  # s1 freed its GPU
    assert store.get("s0").gpu_hours == pytest.approx(1.0) and store.get("s1").best_metric == 0.25
    assert cluster.closed == ["s1"] and report.zombies_closed == 1  # runs an ended sweep left RUNNING


def test_killed_after_claim_before_sbatch_submits_once_on_restart(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "a")
    assert store.claim_for_submit("a")  # the dead agent got this far
    report = make_agent(store, cluster).tick()
    assert report.resubmitted == ["a"] and cluster.names() == ["orch.a"]
    make_agent(store, cluster).tick()
    assert cluster.names() == ["orch.a"] and store.get("a").state == SweepState.SUBMITTED


def test_killed_after_sbatch_before_record_is_found_not_resubmitted(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "a")
    assert store.claim_for_submit("a")
    cluster.submit("/bundles/a")  # sbatch went through, the agent died before recording it
    report = make_agent(store, cluster).tick()
    assert report.reconciled == ["a"] and report.resubmitted == [] and cluster.calls["submit"] == 1
    assert store.get("a").job_ids == ("101",) and store.get("a").state == SweepState.SUBMITTED
    assert cluster.adopted == {"a": ["101"]}


def test_job_only_in_accounting_is_found_too(store: QueueStore) -> None:
    cluster = FakeCluster(accounting=[JobRecord("77", "orch.a", JobState.COMPLETED, "n1", "00:01:00", 0, "None", "")])
    add(store, "a")
    assert store.claim_for_submit("a")
    report = make_agent(store, cluster).tick()
    assert report.reconciled == ["a"] and cluster.calls["submit"] == 0 and cluster.calls["history"] == 1
    make_agent(store, cluster).tick()
    assert store.get("a").state == SweepState.SUCCEEDED


def test_sbatch_of_the_dead_agent_still_running_is_waited_for(store: QueueStore) -> None:
    cluster = FakeCluster(in_flight={"a"})
    add(store, "a")
    assert store.claim_for_submit("a")
    make_agent(store, cluster).tick()
    assert cluster.calls["submit"] == 0 and store.get("a").state == SweepState.SUBMITTING
    cluster.in_flight.clear()
    make_agent(store, cluster).tick()
    assert cluster.names() == ["orch.a"]


def test_refused_submit_fails_the_sweep_with_its_reason(store: QueueStore) -> None:
    cluster = FakeCluster(refuse={"a"})
    add(store, "a")
    make_agent(store, cluster).tick()
    row = store.get("a")
    assert row.state == SweepState.FAILED and "invalid partition" in row.reason


def test_a_submit_deferred_while_the_tracking_server_is_down_stays_queued_and_goes_through_later(
    store: QueueStore,
) -> None:
    cluster = FakeCluster(defer={"a": 2})
    add(store, "a")
    now = [1000.0]
    agent = Agent(store, cluster, QueueSettings(tick_s=1), "c", "agent-test", clock=lambda: now[0])
    agent.tick()
    row = store.get("a")
    assert row.state == SweepState.QUEUED and "submit deferred: tracking.uri: nothing listens" in row.reason
    assert [e["kind"] for e in store.events("a")][-2:] == ["submitting", "submit-deferred"]
    now[0] += DEFER_S - 1
    agent.tick()
    assert cluster.calls["submit"] == 1, "a deferred submit waits DEFER_S before its next try"
    now[0] += 2
    agent.tick()  # the second try is deferred too
    assert cluster.calls["submit"] == 2 and store.get("a").state == SweepState.QUEUED
    now[0] += DEFER_S + 1
    report = agent.tick()
    assert report.submitted == ["a"] and cluster.names() == ["orch.a"]
    row = store.get("a")
    assert row.state == SweepState.SUBMITTED and row.reason == "" and row.submit_count == 3


def test_budgets_priorities_and_reasons(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "lo-1", "low", priority=0)
    add(store, "hi-1", "high", priority=10)
    add(store, "hi-2", "high", priority=10)
    add(store, "mid-1", "mid", priority=5)
    settings = {
        "global_max_gpus": 3,
        "aging_per_hour": 0.0,
        "projects": {"high": ProjectBudgetConfig(max_concurrent_gpus=1), "mid": ProjectBudgetConfig(gpu_hours_per_week=0)},
    }
    report = make_agent(store, cluster, **settings).tick()
    assert report.submitted == ["hi-1", "lo-1"]
    assert "would exceed 1 concurrent GPUs" in store.get("hi-2").reason
    assert "used its 0 GPU-hours this week" in store.get("mid-1").reason


def test_after_waits_for_success_and_says_why(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "first")
    add(store, "second", after=("first",))
    agent = make_agent(store, cluster)
    assert agent.tick().submitted == ["first"]
    assert store.get("second").reason == "waits for first"
    cluster.set_state("first", JobState.FAILED)
    agent.tick()
    assert "which ended failed" in store.get("second").reason and store.get("second").state == SweepState.QUEUED


def test_cancelled_sweep_with_live_jobs_is_cancelled_on_the_cluster(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "a")
    agent = make_agent(store, cluster)
    agent.tick()
    store.cancel("a")
    agent.tick()
    assert cluster.calls["cancel"] == 1 and all(j.state == JobState.CANCELLED for j in cluster.jobs.values())
    agent.tick()
    assert cluster.calls["cancel"] == 1


def test_jobs_held_after_a_failed_launch_are_released(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "a")
    agent = make_agent(store, cluster)
    agent.tick()
    (job_id,) = cluster.jobs
    cluster.jobs[job_id] = QueueJob(job_id, "orch.a", JobState.PENDING, 30.0, 1, "launch failed requeued held")
    report = agent.tick()
    assert report.released == 1 and cluster.released == [job_id] and store.get("a").state == SweepState.REQUEUED
    (event,) = store.events("a", kinds=["slurm_hold_released"])
    assert event["detail"] == f"job {job_id} was held by SLURM (launch failed requeued held): released", event
    # A held job of a sweep this queue does not hold (a direct `orch submit`): not the agent's to release.
    cluster.jobs[job_id] = QueueJob(job_id, "orch.a", JobState.PENDING, 30.0, 1, "BeginTime")  # released: waits
    cluster.jobs["99"] = QueueJob("99", "orch.direct-1", JobState.PENDING, 0.0, 1, "launch failed requeued held")
    report = agent.tick()
    assert report.released == 0 and "99" not in cluster.released, cluster.released


def test_second_agent_waits_for_the_lease(store: QueueStore) -> None:
    cluster = FakeCluster()
    add(store, "a")
    make_agent(store, cluster).tick()
    other = Agent(store, cluster, QueueSettings(), "c", "agent-other", clock=lambda: 1005.0)
    report = other.tick()
    assert report.skipped and "agent-test" in report.skipped and cluster.calls["submit"] == 1


@pytest.mark.parametrize(
    ("states", "restarts", "expected"),
    [
        (["PENDING"], 0, SweepState.SUBMITTED),
        (["PENDING"], 2, SweepState.REQUEUED),
        (["RUNNING", "PENDING"], 0, SweepState.RUNNING),
        (["PREEMPTED"], 0, SweepState.PREEMPTED),
        (["COMPLETED", "COMPLETED"], 0, SweepState.SUCCEEDED),
        (["COMPLETED", "FAILED"], 0, SweepState.FAILED),
        (["CANCELLED by 0"], 0, SweepState.CANCELLED),
        (["TIMEOUT"], 0, SweepState.FAILED),
        (["NODE_FAIL"], 0, SweepState.FAILED),
        (["CONFIGURING"], 0, SweepState.RUNNING),
        (["CF"], 0, SweepState.RUNNING),
        (["REQUEUE_HOLD"], 1, SweepState.REQUEUED),
        (["SPECIAL_EXIT"], 1, SweepState.REQUEUED),
        (["RESIZING"], 0, SweepState.RUNNING),
        (["SIGNALING"], 0, SweepState.RUNNING),
        (["STAGE_OUT"], 0, SweepState.RUNNING),
        (["RESV_DEL_HOLD"], 0, SweepState.SUBMITTED),
        (["SOMETHING_NEW"], 0, None),
        (["COMPLETED", "SOMETHING_NEW"], 0, None),
    ],
)
def test_sweep_state_from_slurm_job_states(states: list[str], restarts: int, expected: SweepState | None) -> None:
    """Through the parser, as the agent sees them: None (keep the sweep's state) for what we cannot classify."""
    assert sweep_state_from_jobs([JobState.parse(s) for s in states], restarts) == expected


def test_restarted_agent_takes_over_the_lease_of_a_dead_one_on_this_host(store: QueueStore) -> None:
    import subprocess
    import sys

    from orchestrator.login.queue.agent import holder_is_dead, holder_name

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = holder_name(child.pid)
    child.wait()
    assert holder_is_dead(dead) and not holder_is_dead(holder_name()) and not holder_is_dead("elsewhere:1:2")
    cluster = FakeCluster()
    add(store, "a")
    assert store.acquire_lease("c", dead, ttl_s=600, now=1000)
    report = make_agent(store, cluster).tick()
    assert report.skipped is None and report.submitted == ["a"]
    assert not Agent(store, cluster, QueueSettings(), "c", "elsewhere:1:2", clock=lambda: 1015.0).tick().submitted
