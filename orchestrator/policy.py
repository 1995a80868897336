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

from dataclasses import dataclass, field
from typing import Iterable, Mapping


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
    running_gpus: Mapping[str, int] = field(default_factory=dict)        # per project, now
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
) -> Plan:
    running = dict(usage.running_gpus)
    total = sum(running.values())
    waiting = sorted(queued, key=lambda s: s.sweep_id)
    chosen: list[Decision] = []
    held: dict[str, str] = {}
    while waiting:
        startable = []
        for sweep in waiting:
            reason = _why_not(sweep, running, total, usage, budgets.get(sweep.project, ProjectBudget()), settings)
            if reason is None:
                startable.append(sweep)
            else:
                held[sweep.sweep_id] = reason
        if not startable:
            break
        best = min(startable, key=lambda s: _order(s, running, budgets, settings, now))
        chosen.append(Decision(best.sweep_id, best.project, best.gpus, effective_priority(best, now, settings)))
        held.pop(best.sweep_id, None)
        running[best.project] = running.get(best.project, 0) + best.gpus
        total += best.gpus
        waiting = [s for s in waiting if s.sweep_id != best.sweep_id]
    return Plan(tuple(chosen), {k: v for k, v in held.items() if k not in {d.sweep_id for d in chosen}})


def _order(sweep: QueuedSweep, running: Mapping[str, int], budgets: Mapping[str, ProjectBudget],
           settings: PolicySettings, now: float) -> tuple[float, float, float, str]:
    weight = budgets.get(sweep.project, ProjectBudget()).weight
    share_used = running.get(sweep.project, 0) / weight if weight > 0 else float("inf")
    return (-effective_priority(sweep, now, settings), share_used, sweep.queued_at, sweep.sweep_id)


def _why_not(sweep: QueuedSweep, running: Mapping[str, int], total: int, usage: Usage,
             budget: ProjectBudget, settings: PolicySettings) -> str | None:
    if budget.gpu_hours_per_week is not None and usage.gpu_hours_this_week.get(sweep.project, 0.0) >= budget.gpu_hours_per_week:
        return f"project {sweep.project} used its {budget.gpu_hours_per_week:g} GPU-hours this week"
    if budget.max_concurrent_gpus is not None and running.get(sweep.project, 0) + sweep.gpus > budget.max_concurrent_gpus:
        return f"project {sweep.project} would exceed {budget.max_concurrent_gpus} concurrent GPUs"
    if settings.global_max_gpus is not None and total + sweep.gpus > settings.global_max_gpus:
        return f"the account would exceed {settings.global_max_gpus} GPUs"
    return None
