"""Sweep and trial states, and the only legal moves between them (drawn in docs/queue.md)."""

from __future__ import annotations

from enum import Enum


class SweepState(str, Enum):
    QUEUED = "queued"          # waiting for the policy (priority, budgets, `after:`)
    HELD = "held"              # `orch hold`: never started until `orch release`
    SUBMITTING = "submitting"  # the agent decided to submit; sbatch may or may not have happened (crash window)
    SUBMITTED = "submitted"    # SLURM has the job(s), pending
    RUNNING = "running"
    PREEMPTED = "preempted"    # SLURM preempted a job of the sweep; it goes back to the queue (REQUEUE)
    REQUEUED = "requeued"      # pending again after a preemption, a time limit or `scontrol requeue`
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def on_cluster(self) -> bool:
        """States in which SLURM has (or may have) jobs of the sweep."""
        return self in ON_CLUSTER


TERMINAL = frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED})
ON_CLUSTER = frozenset({SweepState.SUBMITTING, SweepState.SUBMITTED, SweepState.RUNNING, SweepState.PREEMPTED,
                        SweepState.REQUEUED})
_CLUSTER_OUTCOMES = {SweepState.SUBMITTED, SweepState.RUNNING, SweepState.PREEMPTED, SweepState.REQUEUED,
                     SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED}

TRANSITIONS: dict[SweepState, frozenset[SweepState]] = {
    SweepState.QUEUED: frozenset({SweepState.HELD, SweepState.SUBMITTING, SweepState.CANCELLED}),
    SweepState.HELD: frozenset({SweepState.QUEUED, SweepState.CANCELLED}),
    SweepState.SUBMITTING: frozenset(_CLUSTER_OUTCOMES),
    SweepState.SUBMITTED: frozenset(_CLUSTER_OUTCOMES - {SweepState.SUBMITTED}),
    SweepState.RUNNING: frozenset(_CLUSTER_OUTCOMES - {SweepState.RUNNING}),
    SweepState.PREEMPTED: frozenset(_CLUSTER_OUTCOMES - {SweepState.PREEMPTED}),
    SweepState.REQUEUED: frozenset(_CLUSTER_OUTCOMES - {SweepState.REQUEUED}),
    SweepState.SUCCEEDED: frozenset(),
    SweepState.FAILED: frozenset(),
    SweepState.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, sweep_id: str, old: SweepState, new: SweepState) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "none (it has ended)"
        super().__init__(f"sweep {sweep_id} is {old.value}; it cannot become {new.value} (from {old.value}: {allowed})")
        self.sweep_id, self.old, self.new = sweep_id, old, new


def check_transition(sweep_id: str, old: SweepState, new: SweepState) -> None:
    if new != old and new not in TRANSITIONS[old]:
        raise IllegalTransition(sweep_id, old, new)


class TrialState(str, Enum):
    """A trial as Ray Tune reports it in the sweep folder, in our words."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"          # checkpointed and stopped by a scheduler, or by a preemption
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def from_tune(cls, status: str) -> TrialState:
        return _FROM_TUNE.get(status.upper(), cls.PENDING)

    @property
    def done(self) -> bool:
        return self in (TrialState.SUCCEEDED, TrialState.FAILED, TrialState.CANCELLED)


_FROM_TUNE = {"PENDING": TrialState.PENDING, "RUNNING": TrialState.RUNNING, "PAUSED": TrialState.PAUSED,
              "TERMINATED": TrialState.SUCCEEDED, "ERROR": TrialState.FAILED, "KILLED": TrialState.CANCELLED}


def sweep_state_from_jobs(job_states: list[str], restarts: int) -> SweepState:
    """What SLURM's states of a sweep's jobs (one, or one per array task) mean for the sweep."""
    states = [s.split()[0].rstrip("+") if s.strip() else "UNKNOWN" for s in job_states]
    if not states:
        return SweepState.SUBMITTED
    if any(s in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED") for s in states):
        return SweepState.RUNNING
    if any(s == "PREEMPTED" for s in states):
        return SweepState.PREEMPTED
    if any(s in ("REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD") for s in states):
        return SweepState.REQUEUED
    if any(s == "PENDING" for s in states):
        return SweepState.REQUEUED if restarts > 0 else SweepState.SUBMITTED
    if all(s == "COMPLETED" for s in states):
        return SweepState.SUCCEEDED
    if any(s == "CANCELLED" for s in states):
        return SweepState.CANCELLED
    return SweepState.FAILED
