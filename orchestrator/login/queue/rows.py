"""The queue's rows as the store hands them out and takes them in (typed results of the one adaptor of
the queue database, orchestrator/login/queue/store.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.kernel.states import SweepState


@dataclass(frozen=True)
class NewSweep:
    sweep_id: str
    project: str
    name: str
    cluster: str
    bundle: str
    priority: int
    gpus: int
    config_hash: str
    metric: str
    mode: str
    after: tuple[str, ...] = ()
    held: bool = False


@dataclass(frozen=True)
class SweepRow:
    sweep_id: str
    project: str
    name: str
    cluster: str
    bundle: str
    priority: int
    state: SweepState
    gpus: int
    config_hash: str
    metric: str
    mode: str
    queued_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    job_ids: tuple[str, ...]
    submit_count: int
    trials_done: int
    trials_running: int
    trials_pending: int
    gpu_seconds: float
    best_metric: float | None
    reason: str
    after: tuple[str, ...] = ()

    @classmethod
    def of(cls, row: Mapping[Any, Any], after: Sequence[str] = ()) -> SweepRow:
        values = dict(row)
        values["state"] = SweepState(values["state"])
        values["job_ids"] = tuple(json.loads(values["job_ids"] or "[]"))
        return cls(**values, after=tuple(after))

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0


@dataclass(frozen=True)
class JobUpdate:
    """What one tick learned about one SLURM job of a sweep."""

    job_id: str
    state: str
    elapsed_s: float


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    state: str  # a TrialState value
    epoch: int
    metric: float | None


@dataclass(frozen=True)
class SweepUpdate:
    """What one tick learned about one sweep; None fields are left as they are."""

    sweep_id: str
    state: SweepState | None = None
    jobs: tuple[JobUpdate, ...] = ()
    trials: tuple[int, int, int] | None = None  # done, running, pending
    best_metric: float | None = None
    reason: str | None = None
    event: str | None = None
    trial_rows: tuple[TrialRow, ...] = ()


@dataclass(frozen=True)
class Usage:
    running_gpus: dict[str, int] = field(default_factory=dict)
    gpu_hours_this_week: dict[str, float] = field(default_factory=dict)
