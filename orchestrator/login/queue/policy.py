"""Which queued sweeps to submit next: one small, pure function of the queue's state.

Rules, in order:
1. a sweep may start only if its project stays within its concurrent-GPU cap and has
   GPU-hours left this week, and the whole account stays within its global GPU cap;
2. among the sweeps that may start, the highest *effective* priority goes first:
   priority + `aging_per_hour` x hours waited, so low-priority work is never starved;
3. ties go to the project using the least of its fair share (running GPUs / weight),
   then to the sweep that waited longest, then to the sweep id (deterministic).

No I/O, no clock: the caller passes `now`; the same inputs always give the same plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProjectBudget:
    weight: float = 1.0
    max_concurrent_gpus: int | None = None
    gpu_hours_per_week: float | None = None


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: str
    project: str
    priority: int
    gpus: int
    queued_at: float  # seconds (the caller's clock)


@dataclass(frozen=True)
class Usage:
    running_gpus: Mapping[str, int] = field(default_factory=dict)  # per project, now
    gpu_hours_this_week: Mapping[str, float] = field(default_factory=dict)  # per project


@dataclass(frozen=True)
class PolicySettings:
    global_max_gpus: int | None = None
    aging_per_hour: float = 1.0


@dataclass(frozen=True)
class Decision:
    sweep_id: str
    project: str
    gpus: int
    effective_priority: float


@dataclass(frozen=True)
class Plan:
    submit: tuple[Decision, ...]
    held: Mapping[str, str]  # sweep id -> why it waits


def effective_priority(sweep: QueuedSweep, now: float, settings: PolicySettings) -> float:
    waited_h = max(0.0, now - sweep.queued_at) / 3600.0
    return sweep.priority + settings.aging_per_hour * waited_h


def plan(
    queued: Iterable[QueuedSweep],
    usage: Usage,
    budgets: Mapping[str, ProjectBudget],
    settings: PolicySettings,
    now: float,
    max_decisions: int | None = None,
) -> Plan:
    """Which sweeps start now, in order; every other sweep gets the reason it waits.

    Within a project the order never depends on what is chosen, so each project's sweeps are
    sorted once and only the projects' best candidates are compared at each step:
    O(n log n + decisions x (projects + skipped)), fast enough for 10,000 queued sweeps.
    """
    running = dict(usage.running_gpus)
    total = sum(running.values())
    by_project: dict[str, list[QueuedSweep]] = {}
    for sweep in queued:
        by_project.setdefault(sweep.project, []).append(sweep)
    for sweeps in by_project.values():
        sweeps.sort(key=lambda s: (-effective_priority(s, now, settings), s.queued_at, s.sweep_id))
    chosen: list[Decision] = []
    taken: set[str] = set()
    smallest = min((s.gpus for sweeps in by_project.values() for s in sweeps), default=0)
    while max_decisions is None or len(chosen) < max_decisions:
        if settings.global_max_gpus is not None and total + smallest > settings.global_max_gpus:
            break  # the account is full: no sweep can start, whatever its project
        candidates = []
        for project, sweeps in by_project.items():
            budget = budgets.get(project, ProjectBudget())
            for sweep in sweeps:
                if sweep.sweep_id in taken:
                    continue
                if _why_not(sweep, running, total, usage, budget, settings) is None:
                    candidates.append(sweep)
                    break
                if _project_exhausted(sweep, usage, budget):
                    break  # no other sweep of this project can start either
        if not candidates:
            break
        best = min(candidates, key=lambda s: _order(s, running, budgets, settings, now))
        chosen.append(Decision(best.sweep_id, best.project, best.gpus, effective_priority(best, now, settings)))
        taken.add(best.sweep_id)
        running[best.project] = running.get(best.project, 0) + best.gpus
        total += best.gpus
    held: dict[str, str] = {}
    for project, sweeps in by_project.items():
        budget = budgets.get(project, ProjectBudget())
        for sweep in sweeps:
            if sweep.sweep_id not in taken:
                held[sweep.sweep_id] = _why_not(sweep, running, total, usage, budget, settings) or "waits its turn"
    return Plan(tuple(chosen), held)


def _project_exhausted(sweep: QueuedSweep, usage: Usage, budget: ProjectBudget) -> bool:
    return (
        budget.gpu_hours_per_week is not None and usage.gpu_hours_this_week.get(sweep.project, 0.0) >= budget.gpu_hours_per_week
    )


def _order(
    sweep: QueuedSweep, running: Mapping[str, int], budgets: Mapping[str, ProjectBudget], settings: PolicySettings, now: float
) -> tuple[float, float, float, str]:
    weight = budgets.get(sweep.project, ProjectBudget()).weight
    share_used = running.get(sweep.project, 0) / weight if weight > 0 else float("inf")
    return (-effective_priority(sweep, now, settings), share_used, sweep.queued_at, sweep.sweep_id)


def _why_not(
    sweep: QueuedSweep, running: Mapping[str, int], total: int, usage: Usage, budget: ProjectBudget, settings: PolicySettings
) -> str | None:
    if budget.gpu_hours_per_week is not None and usage.gpu_hours_this_week.get(sweep.project, 0.0) >= budget.gpu_hours_per_week:
        return f"project {sweep.project} used its {budget.gpu_hours_per_week:g} GPU-hours this week"
    if budget.max_concurrent_gpus is not None and running.get(sweep.project, 0) + sweep.gpus > budget.max_concurrent_gpus:
        return f"project {sweep.project} would exceed {budget.max_concurrent_gpus} concurrent GPUs"
    if settings.global_max_gpus is not None and total + sweep.gpus > settings.global_max_gpus:
        return f"the account would exceed {settings.global_max_gpus} GPUs"
    return None
