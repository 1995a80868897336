"""The scheduling policy across projects: priorities, aging, fair share, budgets, caps."""

from __future__ import annotations

import random

from orchestrator.login.queue.policy import PolicySettings, ProjectBudget, QueuedSweep, Usage, plan

HOUR = 3600.0
NOW = 100 * HOUR


def sweep(sweep_id: str, project: str, priority: int = 0, gpus: int = 1, waited_h: float = 0.0) -> QueuedSweep:
    return QueuedSweep(sweep_id, project, priority, gpus, NOW - waited_h * HOUR)


def ids(result) -> list[str]:
    return [d.sweep_id for d in result.submit]


def test_higher_priority_first_within_the_global_cap() -> None:
    queued = [sweep("a", "p", 1), sweep("b", "p", 5), sweep("c", "p", 3)]
    result = plan(queued, Usage(), {}, PolicySettings(global_max_gpus=2, aging_per_hour=0), NOW)
    assert ids(result) == ["b", "c"]
    assert result.held == {"a": "the account would exceed 2 GPUs"}


def test_aging_lets_old_low_priority_work_overtake() -> None:
    queued = [sweep("old-low", "p", priority=0, waited_h=48), sweep("new-high", "q", priority=10)]
    result = plan(queued, Usage(), {}, PolicySettings(global_max_gpus=1, aging_per_hour=0.5), NOW)
    assert ids(result) == ["old-low"]  # 0 + 0.5 x 48 = 24 > 10


def test_fair_share_breaks_ties_by_weighted_usage() -> None:
    queued = [sweep("a1", "a"), sweep("b1", "b"), sweep("a2", "a"), sweep("b2", "b")]
    budgets = {"a": ProjectBudget(weight=1), "b": ProjectBudget(weight=3)}
    result = plan(queued, Usage(running_gpus={"a": 1, "b": 2}), budgets, PolicySettings(global_max_gpus=7, aging_per_hour=0), NOW)
    # b uses 2/3 of a weight-unit, a 1/1: b goes first until its share catches up.
    assert ids(result) == ["b1", "a1", "b2", "a2"][: len(result.submit)]
    assert len(result.submit) == 4


def test_project_caps_and_weekly_budget() -> None:
    queued = [sweep("a1", "a", gpus=2), sweep("a2", "a", gpus=2), sweep("b1", "b"), sweep("c1", "c")]
    budgets = {"a": ProjectBudget(max_concurrent_gpus=3), "b": ProjectBudget(gpu_hours_per_week=10)}
    usage = Usage(running_gpus={"a": 0}, gpu_hours_this_week={"b": 10.5})
    result = plan(queued, usage, budgets, PolicySettings(), NOW)
    assert sorted(ids(result)) == ["a1", "c1"]
    assert result.held["a2"] == "project a would exceed 3 concurrent GPUs"
    assert result.held["b1"] == "project b used its 10 GPU-hours this week"


def test_same_inputs_same_plan_whatever_the_order() -> None:
    rng = random.Random(0)
    queued = [sweep(f"s{i}", f"p{i % 3}", rng.randint(0, 5), rng.randint(1, 3), rng.random() * 10) for i in range(40)]
    budgets = {"p0": ProjectBudget(weight=2, max_concurrent_gpus=8), "p1": ProjectBudget(), "p2": ProjectBudget(weight=0.5)}
    settings = PolicySettings(global_max_gpus=16)
    first = plan(queued, Usage(), budgets, settings, NOW)
    shuffled = queued[:]
    rng.shuffle(shuffled)
    assert plan(shuffled, Usage(), budgets, settings, NOW) == first
    assert sum(d.gpus for d in first.submit) <= 16
    assert sum(d.gpus for d in first.submit if d.project == "p0") <= 8


def test_no_project_starves_under_a_stream_of_high_priority_work() -> None:
    settings = PolicySettings(global_max_gpus=1, aging_per_hour=1.0)
    low = sweep("low", "quiet", priority=0, waited_h=0)
    now = NOW
    for hour in range(30):
        stream = [QueuedSweep(f"hi{hour}", "busy", 5, 1, now)]
        result = plan([low, *stream], Usage(), {}, settings, now)
        if ids(result) == ["low"]:
            assert hour >= 5  # it waited until aging lifted it to the stream's priority (older wins ties)
            return
        now += HOUR
    raise AssertionError("the low-priority sweep never started")
