"""The wire between the laptop and the login node: the one owner of the result envelope.

The laptop runs `python -m orchestrator.login COMMAND ...` on the login node (over ssh, directly, or
inside the REST transport's submit job). The command may print anything; its LAST line starting
with the prefix is its answer:

    ORCH-RESULT {"ok": true, ...}                                                  the answer
    ORCH-RESULT {"ok": false, "code": 2, "error": {"key": ..., "problem": ..., "fix": ...}}

Each command's answer is a typed model below; the login node builds it, the laptop reads it back with
`read(Model, ...)` (`emit`/`emit_error` write the line, `find_answer` + `decode` read it; the error side
is raised as a `RemoteError` located at the profile file that named the cluster). Models ignore fields
they do not know, so a newer login node still answers an older laptop.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from orchestrator.kernel.errors import Problem, RemoteError
from orchestrator.kernel.states import JobState

RESULT_PREFIX = "ORCH-RESULT "
A = TypeVar("A", bound="Answer")


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---------------------------------------------------------------------------- the sweep service
class SubmitAnswer(Answer):
    sweep_id: str
    job_ids: list[str]
    parent_run_id: str | None = None
    experiment_id: str | None = None
    bundle: str | None = None
    submit_job_id: str | None = None  # the REST transport's submit job
    pending: bool = False  # REST: the submit job has not run yet; it submits the sweep when it does


class ResumeAnswer(Answer):
    sweep_id: str
    job_ids: list[str]
    resumed_trials: list[str]
    finished_trials: int


class CancelAnswer(Answer):
    sweep_id: str
    cancelled_jobs: list[str]
    closed_runs: int
    was: str | None = None  # the queue's state of the sweep before it was cancelled


class JobStatus(Answer):
    job_id: str
    state: JobState
    name: str = ""
    node_list: str = ""
    elapsed: str = ""
    restarts: int = 0
    reason: str = ""
    alloc_tres: str = ""
    kind: str = "job"
    released: bool = False  # SLURM held it after a failed launch; `status` released it


class TrialRecord(Answer):
    trial_id: str
    state: str  # Tune's trial status (trials.json), or the MLflow run status where only MLflow is readable
    epoch: int = 0
    metric: float | None = None
    shard: int | None = None
    job_id: str | None = None

    @field_validator("epoch", mode="before")
    @classmethod
    def _no_epoch_yet(cls, value: Any) -> Any:
        return 0 if value is None else value


class SweepStatus(Answer):
    sweep_id: str
    project: str
    submitted_at: float
    cancelled: bool
    jobs: list[JobStatus]
    trials: list[TrialRecord]
    parent_run_id: str | None = None
    code: str | None = None


class StatusAnswer(Answer):
    sweeps: list[SweepStatus]


class LogsAnswer(Answer):
    files: list[str]


class ManifestAnswer(Answer):
    manifest: dict[str, Any]


class Preemption(Answer):
    by_job: str | None
    outcome: str
    seconds: float
    signals_seen: list[str]


class DrillReport(Answer):
    job_id: str
    folder: str
    partition: str
    node: str = ""
    kind: str = "class"  # the trainable's form: a class's checkpoint is timed; a function or a command checkpoints itself
    checkpoint_s: float | None = None
    checkpoint_bytes: int | None = None
    first_step_s: float | None = None
    preempt_mode: str
    grace_time_s: float
    signal_delivered: bool
    signal_latency_s: float | None
    checkpoint_on_signal_s: float | None
    preemption: Preemption | None = None
    fits: bool  # fits both below
    budget_s: float  # the shorter of the two windows (0: a preemption gives none)
    signal_lead_s: float = 0.0
    fits_time_limit: bool = False
    fits_preemption: bool = False
    every_epochs: int | None = None  # the sweep's checkpoint cadence
    lost_on_preemption_s: float | None = None  # with no GraceTime: the work a preemption can lose


# ---------------------------------------------------------------------------- the queue and its agent
class QueuedSweep(Answer):
    """One sweep of the queue (a row of the store)."""

    sweep_id: str
    project: str
    name: str
    cluster: str
    bundle: str
    priority: int
    state: str
    gpus: int
    config_hash: str
    metric: str
    mode: str
    queued_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    job_ids: list[str]
    submit_count: int
    trials_done: int
    trials_running: int
    trials_pending: int
    gpu_seconds: float
    gpu_hours: float
    best_metric: float | None
    reason: str
    after: list[str]


class EnqueueAnswer(Answer):
    sweep: QueuedSweep
    position: int | None
    queued: int


class DuplicatesAnswer(Answer):
    duplicates: list[QueuedSweep]


class AgentLease(Answer):
    lease_holder: str | None
    last_tick: str | None  # JSON: {"at", "holder", "own_ms", "cluster_calls", "skipped"}


class QueueListing(Answer):
    sweeps: list[QueuedSweep]
    counts: dict[str, int]
    shown: int
    agent: AgentLease


class SweepChanged(Answer):
    sweep: QueuedSweep


class AgentJob(Answer):
    job_id: str
    state: str
    restarts: int


class AgentAnswer(Answer):
    """What `agent start|stop|status` says, for the agent as a process (pid) or as a SLURM job (job_id)."""

    pid: int | None = None
    already_running: bool | None = None
    stopped: bool | None = None
    log: str | None = None
    job_id: str | None = None
    job_ids: list[str] | None = None
    state: str | None = None
    lease_holder: str | None = None
    last_tick: dict[str, Any] | None = None
    jobs: list[AgentJob] | None = None


def dump(answer: Answer) -> dict[str, Any]:
    """The answer as the JSON-ready mapping `emit` sends."""
    return answer.model_dump(mode="json")


def encode(answer: Mapping[str, Any]) -> str:
    """One answer line: `ORCH-RESULT {"ok": true, ...}`."""
    return RESULT_PREFIX + json.dumps({"ok": True, **answer})


def encode_error(error: Problem) -> str:
    """One error line: `ORCH-RESULT {"ok": false, "code": N, "error": {...}}`."""
    return RESULT_PREFIX + json.dumps({"ok": False, "code": error.exit_code, "error": error.as_dict()})


def emit(answer: Answer | Mapping[str, Any]) -> None:
    sys.stdout.write(encode(dump(answer) if isinstance(answer, Answer) else answer) + "\n")
    sys.stdout.flush()


def emit_error(error: Problem) -> int:
    """Write the error as the answer; returns the exit code the command should end with."""
    sys.stdout.write(encode_error(error) + "\n")
    sys.stdout.flush()
    return error.exit_code


def find_answer(output: str) -> str | None:
    """The JSON of the last answer line in a command's output (None: the command printed none)."""
    return next((line[len(RESULT_PREFIX) :] for line in reversed(output.splitlines()) if line.startswith(RESULT_PREFIX)), None)


def printed_lines(output: str) -> list[str]:
    """What a command printed besides its answer (logs, `orch logs` file contents)."""
    return [line for line in output.splitlines() if not line.startswith(RESULT_PREFIX)]


def decode(payload: str, where: Path | str | None) -> dict[str, Any]:
    """The answer as a dict; the error side raised as `RemoteError` located at `where`."""
    try:
        answer = json.loads(payload)
    except json.JSONDecodeError:
        raise RemoteError(
            "remote",
            f"the login node answered something that is not JSON ({payload[:120]!r})",
            "check that the login node runs the same version of orch",
            where=where,
            exit_code=1,
        ) from None
    return checked(answer, where)


def checked(answer: Any, where: Path | str | None) -> dict[str, Any]:
    """A decoded answer as a dict; the error side raised as `RemoteError` located at `where`."""
    if not isinstance(answer, dict):
        raise RemoteError(
            "remote",
            "the login node's answer is not an object",
            "check that the login node runs the same version of orch",
            where=where,
            exit_code=1,
        )
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise RemoteError(
            str(error.get("key", "remote")),
            str(error.get("problem", "the login node failed")),
            str(error.get("fix", "see the login node's log")),
            where=where,
            exit_code=int(answer.get("code", 2)),
        )
    return answer


def read(model: type[A], answer: Mapping[str, Any], where: Path | str | None) -> A:
    """A checked answer as its typed model; an answer of another shape is the login node's failure."""
    try:
        return model.model_validate(dict(answer))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RemoteError(
            "remote",
            f"the login node's answer lacks {'.'.join(map(str, first['loc']))} ({first['msg']})",
            "check that the login node runs the same version of orch",
            where=where,
            exit_code=1,
        ) from None
