"""Time limits that start early: ask SLURM (`sbatch --test-only`) when jobs of the same shape but
shorter limits would start, and take the longest limit among those that start earliest.

A shorter job can start in a backfill gap; the work it cannot finish is carried by requeues
(the job checkpoints on the time-limit signal, `signal_lead_s` before the end), so the
requeue budget grows to cover the full time the profile asked for.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.kernel.config.models import SlurmSettings

_START = re.compile(r"to start at (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})")


@dataclass(frozen=True)
class TimeFit:
    time_limit_min: int
    max_requeues: int
    starts: dict[int, float]  # candidate limit (min) -> predicted start (epoch seconds)
    reason: str


def candidates(settings: SlurmSettings) -> list[int]:
    """The profile's limit, then halves of it down to `min_time_limit_min` (longest first)."""
    limits, limit = [], settings.time_limit_min
    while limit >= settings.min_time_limit_min:
        limits.append(limit)
        limit //= 2
    return limits or [settings.time_limit_min]


def predicted_start(test_only_answer: str) -> float | None:
    """The start time `sbatch --test-only` predicts ("... to start at 2026-11-23T15:24:06 ..."), epoch seconds."""
    match = _START.search(test_only_answer)
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")) if match else None


def choose(settings: SlurmSettings, starts: dict[int, float], tolerance_s: float = 60.0) -> TimeFit:
    """The longest limit whose predicted start is within `tolerance_s` of the earliest."""
    if not starts:
        return TimeFit(settings.time_limit_min, settings.max_requeues, {}, "no prediction from SLURM: the profile's limit")
    earliest = min(starts.values())
    chosen = max(limit for limit, start in starts.items() if start - earliest <= tolerance_s)
    work_min = settings.time_limit_min * (settings.max_requeues + 1)  # what the profile would have allowed
    requeues = max(settings.max_requeues, math.ceil(work_min / chosen) - 1)
    if chosen == settings.time_limit_min:
        reason = f"the profile's {chosen} min starts as early as any shorter limit"
    else:
        gain = starts[settings.time_limit_min] - starts[chosen] if settings.time_limit_min in starts else 0.0
        reason = f"{chosen} min starts {gain / 60:.0f} min earlier than {settings.time_limit_min} min (backfill); {requeues} requeues carry the rest"
    return TimeFit(chosen, requeues, dict(starts), reason)


def fit_time_limit(settings: SlurmSettings, test_only: Callable[[SlurmSettings], str]) -> TimeFit:
    """Probe every candidate limit with `test_only` (one `sbatch --test-only` each) and choose."""
    starts = {}
    for limit in candidates(settings):
        start = predicted_start(test_only(settings.model_copy(update={"time_limit_min": limit})))
        if start is not None:
            starts[limit] = start
    return choose(settings, starts)
