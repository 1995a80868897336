"""What a job tells the trainables it runs, through their environment: the one owner of that contract.

The orchestrator's job (cluster/node/) sets these variables; a trainable reads them with the
functions below. This module imports nothing of the orchestrator, so any Ray Tune trainable (ours
or a lab's own) may use it, and runs the same without it.

    ORCH_CHECKPOINT_NOW_FILE  names a JSON file {"signal": N, "at": epoch seconds}; it appears when
                              SLURM's signal (preemption, time limit) asks every trial to save a
                              checkpoint after its current step
    ORCH_RUN_LEDGER           the sweep's ledger (JSON): Tune trial id -> MLflow run id
    ORCH_ATTEMPT_TOKEN        the fencing token of the job attempt the trial runs in
    ORCH_ATTEMPT_INDEX        how many attempts of the sweep came before this one (requeues, resumes)
    ORCH_WORKSPACE            the workspace root: where project modules import from, where commands run
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CHECKPOINT_NOW_ENV = "ORCH_CHECKPOINT_NOW_FILE"
RUN_LEDGER_ENV = "ORCH_RUN_LEDGER"
ATTEMPT_TOKEN_ENV = "ORCH_ATTEMPT_TOKEN"
ATTEMPT_INDEX_ENV = "ORCH_ATTEMPT_INDEX"
WORKSPACE_ENV = "ORCH_WORKSPACE"
# A result key (a string, once): the trainable restored from an older checkpoint because the one Tune gave it
# was corrupt; the tracker records it as the run's `orch.checkpoint_fallback` tag.
CHECKPOINT_FALLBACK_KEY = "checkpoint_fallback"


def request_checkpoint(path: Path, signum: int, at: float) -> None:
    """The job's side: ask every trial for a checkpoint now (written whole, or not at all)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"signal": signum, "at": at}))
    os.replace(tmp, path)


def checkpoint_requested_at(path: str | None = None) -> float | None:
    """When the job asked for a checkpoint now (epoch seconds); None when it has not."""
    path = path or os.environ.get(CHECKPOINT_NOW_ENV)
    if not path:
        return None
    try:
        return float(json.loads(Path(path).read_text())["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_id_of(trial_id: str) -> str:
    """The MLflow run of a trial, from the job's ledger ('' when there is none)."""
    ledger = os.environ.get(RUN_LEDGER_ENV)
    if not ledger or not trial_id:
        return ""
    try:
        return str(json.loads(Path(ledger).read_text()).get(trial_id, ""))
    except (OSError, ValueError, AttributeError):
        return ""


def attempt_token() -> str:
    return os.environ.get(ATTEMPT_TOKEN_ENV, "")


def attempt_index() -> int | None:
    """Attempts of the sweep before this one, when the job said (None outside an orchestrated job)."""
    value = os.environ.get(ATTEMPT_INDEX_ENV, "")
    return int(value) if value.isdigit() else None
