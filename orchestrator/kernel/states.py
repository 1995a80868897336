"""The one state vocabulary: SLURM job states, sweep states, Tune trial statuses, MLflow run statuses,
and the only legal moves between sweep states (drawn in docs/queue.md).

Strings from outside (squeue, sacct, scontrol, slurmrestd, Tune, MLflow) become these enums where
they are read; from there on code compares enums, never strings. A SLURM state this version cannot
classify parses to `JobState.UNKNOWN`, which never ends a sweep: the sweep keeps its state until
SLURM says something we know.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobState(StrEnum):
    """Every job state squeue and sacct report (SLURM 22.05-24.x man pages, JOB STATE CODES)."""

    PENDING = "PENDING"  # PD: waiting for resources or priority
    CONFIGURING = "CONFIGURING"  # CF: allocated, nodes booting (power saving, cloud nodes)
    RUNNING = "RUNNING"  # R
    COMPLETING = "COMPLETING"  # CG: ending, some processes still active
    SUSPENDED = "SUSPENDED"  # S: allocation kept, execution suspended
    STOPPED = "STOPPED"  # ST: SIGSTOPped, allocation kept
    SIGNALING = "SIGNALING"  # SI: being signalled
    STAGE_OUT = "STAGE_OUT"  # SO: staging out data (burst buffer)
    RESIZING = "RESIZING"  # RS: changing size
    REQUEUED = "REQUEUED"  # RQ: going back to pending
    REQUEUE_HOLD = "REQUEUE_HOLD"  # RH: requeued and held
    REQUEUE_FED = "REQUEUE_FED"  # RF: requeued by a federation
    RESV_DEL_HOLD = "RESV_DEL_HOLD"  # RD: held after its reservation was deleted
    SPECIAL_EXIT = "SPECIAL_EXIT"  # SE: requeued in a held special state after a special exit code
    COMPLETED = "COMPLETED"  # CD
    CANCELLED = "CANCELLED"  # CA
    FAILED = "FAILED"  # F
    TIMEOUT = "TIMEOUT"  # TO
    PREEMPTED = "PREEMPTED"  # PR: this attempt ended by preemption (a requeued job is PENDING again)
    NODE_FAIL = "NODE_FAIL"  # NF
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # OOM
    BOOT_FAIL = "BOOT_FAIL"  # BF
    DEADLINE = "DEADLINE"  # DL
    REVOKED = "REVOKED"  # RV: a federation sibling took the job
    UNKNOWN = "UNKNOWN"  # anything else: never ends a sweep

    @classmethod
    def _missing_(cls, value: object) -> JobState:
        """JobState("...") of any text: parsed, UNKNOWN when not a state this version knows (never an error)."""
        return cls.parse(str(value))

    @classmethod
    def parse(cls, text: str) -> JobState:
        """A state as squeue (%T or %t), sacct (`CANCELLED by 0`, `RUNNING+`), scontrol or slurmrestd write it."""
        word = text.strip().split()[0].rstrip("+").upper() if text.strip() else ""
        if word in cls.__members__:
            return cls[word]
        return _SHORT_CODES.get(word, cls.UNKNOWN)

    @property
    def is_ended(self) -> bool:
        """The job (this attempt of it) will not run again by itself: SLURM's finished states."""
        return self in _ENDED

    @property
    def holds_allocation(self) -> bool:
        """The job has its nodes: running, booting them, ending, suspended."""
        return self in _HOLDS_ALLOCATION

    @property
    def is_waiting(self) -> bool:
        """The job waits to (re)start: pending, requeued, held."""
        return self in _WAITING


_ENDED = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.PREEMPTED,
        JobState.NODE_FAIL,
        JobState.OUT_OF_MEMORY,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.REVOKED,
    }
)
_HOLDS_ALLOCATION = frozenset(
    {
        JobState.CONFIGURING,
        JobState.RUNNING,
        JobState.COMPLETING,
        JobState.SUSPENDED,
        JobState.STOPPED,
        JobState.SIGNALING,
        JobState.STAGE_OUT,
        JobState.RESIZING,
    }
)
_REQUEUED = frozenset({JobState.REQUEUED, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED, JobState.SPECIAL_EXIT})
_WAITING = frozenset({JobState.PENDING, JobState.RESV_DEL_HOLD, *_REQUEUED})
_SHORT_CODES = {
    "PD": JobState.PENDING,
    "CF": JobState.CONFIGURING,
    "R": JobState.RUNNING,
    "CG": JobState.COMPLETING,
    "S": JobState.SUSPENDED,
    "ST": JobState.STOPPED,
    "SI": JobState.SIGNALING,
    "SO": JobState.STAGE_OUT,
    "RS": JobState.RESIZING,
    "RQ": JobState.REQUEUED,
    "RH": JobState.REQUEUE_HOLD,
    "RF": JobState.REQUEUE_FED,
    "RD": JobState.RESV_DEL_HOLD,
    "SE": JobState.SPECIAL_EXIT,
    "CD": JobState.COMPLETED,
    "CA": JobState.CANCELLED,
    "F": JobState.FAILED,
    "TO": JobState.TIMEOUT,
    "PR": JobState.PREEMPTED,
    "NF": JobState.NODE_FAIL,
    "OOM": JobState.OUT_OF_MEMORY,
    "BF": JobState.BOOT_FAIL,
    "DL": JobState.DEADLINE,
    "RV": JobState.REVOKED,
}
assert set(_ENDED | _HOLDS_ALLOCATION | _WAITING) == set(JobState) - {JobState.UNKNOWN}, "every known state is classified"


class SweepState(StrEnum):
    QUEUED = "queued"  # waiting for the policy (priority, budgets, `after:`)
    HELD = "held"  # `orch hold`: never started until `orch release`
    SUBMITTING = "submitting"  # the agent decided to submit; sbatch may or may not have happened (crash window)
    SUBMITTED = "submitted"  # SLURM has the job(s), pending
    RUNNING = "running"
    PREEMPTED = "preempted"  # SLURM preempted a job of the sweep; it goes back to the queue (REQUEUE)
    REQUEUED = "requeued"  # pending again after a preemption, a time limit or `scontrol requeue`
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
ON_CLUSTER = frozenset(
    {SweepState.SUBMITTING, SweepState.SUBMITTED, SweepState.RUNNING, SweepState.PREEMPTED, SweepState.REQUEUED}
)
_CLUSTER_OUTCOMES = {
    SweepState.SUBMITTED,
    SweepState.RUNNING,
    SweepState.PREEMPTED,
    SweepState.REQUEUED,
    SweepState.SUCCEEDED,
    SweepState.FAILED,
    SweepState.CANCELLED,
}

TRANSITIONS: dict[SweepState, frozenset[SweepState]] = {
    SweepState.QUEUED: frozenset({SweepState.HELD, SweepState.SUBMITTING, SweepState.CANCELLED}),
    SweepState.HELD: frozenset({SweepState.QUEUED, SweepState.CANCELLED}),
    SweepState.SUBMITTING: frozenset({*_CLUSTER_OUTCOMES, SweepState.QUEUED}),  # QUEUED: a deferred submit
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


def sweep_state_from_jobs(job_states: Iterable[JobState], restarts: int) -> SweepState | None:
    """What SLURM's states of a sweep's jobs (one, or one per array task) mean for the sweep; None when
    they do not say (a state this version cannot classify): the sweep keeps the state it has."""
    states = list(job_states)
    if not states:
        return SweepState.SUBMITTED
    if any(s.holds_allocation for s in states):
        return SweepState.RUNNING
    if any(s == JobState.PREEMPTED for s in states):
        return SweepState.PREEMPTED
    if any(s in _REQUEUED for s in states):
        return SweepState.REQUEUED
    if any(s.is_waiting for s in states):
        return SweepState.REQUEUED if restarts > 0 else SweepState.SUBMITTED
    if any(s == JobState.UNKNOWN for s in states):
        return None
    if all(s == JobState.COMPLETED for s in states):
        return SweepState.SUCCEEDED
    if any(s == JobState.CANCELLED for s in states):
        return SweepState.CANCELLED
    return SweepState.FAILED


class TrialStatus(StrEnum):
    """A trial's status as Ray Tune keeps it (`Trial.status`), also in the sweep folder's trials.json."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    @classmethod
    def parse(cls, text: str | None) -> TrialStatus:
        return cls.__members__.get(str(text or "").upper(), cls.PENDING)

    @property
    def is_done(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


class TrialState(StrEnum):
    """A trial as the queue reports it, in our words."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"  # checkpointed and stopped by a scheduler, or by a preemption
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def from_tune(cls, status: TrialStatus | str) -> TrialState:
        if not isinstance(status, TrialStatus) and str(status).upper() == "KILLED":
            return cls.CANCELLED
        return _FROM_TUNE[TrialStatus.parse(status)]

    @property
    def done(self) -> bool:
        return self in (TrialState.SUCCEEDED, TrialState.FAILED, TrialState.CANCELLED)


_FROM_TUNE = {
    TrialStatus.PENDING: TrialState.PENDING,
    TrialStatus.RUNNING: TrialState.RUNNING,
    TrialStatus.PAUSED: TrialState.PAUSED,
    TrialStatus.TERMINATED: TrialState.SUCCEEDED,
    TrialStatus.ERROR: TrialState.FAILED,
}


class RunStatus(StrEnum):
    """An MLflow run's status."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


__all__ = [
    "ON_CLUSTER",
    "TERMINAL",
    "TRANSITIONS",
    "IllegalTransition",
    "JobState",
    "RunStatus",
    "SweepState",
    "TrialState",
    "TrialStatus",
    "check_transition",
    "sweep_state_from_jobs",
]
