"""A Ray Tune callback that records each trial as a nested MLflow run (see `layout`).

It runs in the Tune driver: trial processes never talk to MLflow themselves, so a
trainable stays usable without the orchestrator. Metrics and artifacts go through an
`AsyncMetricLogger` (batched, in the background, spooled to disk while the server is
away), so a slow or absent tracking server never holds up the driver.

Deferred mode (`client=None`, or `deferred=True`; the profile's
`tracking.nodes_reach_server: false`): the tracker never talks to MLflow. Each trial
gets a local run key (`deferred-<hex>`, kept in the run ledger so a requeued job goes
on with it); its run descriptor (experiment, parent, name, tags, params), tags set
later, metrics, artifacts and final status are written to the spool, and
`orch tracking deliver` / `spool.deliver_spool` (the agent) create the run and deliver
it all, exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ray.tune import Callback

from orchestrator.kernel import tracking_layout as layout
from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import RunStatus
from orchestrator.kernel.sweep_folder import SPOOL_DIRNAME, ledger_sibling
from orchestrator.tracking.async_logger import AsyncMetricLogger
from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.secrets import scrub_file, scrub_mapping
from orchestrator.tracking.spool import DEFERRED_PREFIX, RunSpool
from trainables import runtime

log = logging.getLogger(__name__)


class MLflowTrialTracker(Callback):
    """Creates, feeds and closes one child run per trial under the sweep's parent run."""

    def __init__(
        self,
        client: TrackingClient | None,
        experiment_id: str,
        parent_run_id: str,
        base_tags: dict[str, str],
        sweep_name: str,
        ledger_path: Path | None = None,
        spool_dir: Path | None = None,
        artifacts_destination: str | None = None,
        flush_timeout_s: float = 120.0,
        deferred: bool = False,
    ) -> None:
        self._deferred = deferred or client is None  # the node never reaches the server: spool everything
        self._client = None if self._deferred else client
        self._experiment_id = experiment_id
        self._parent_run_id = parent_run_id
        self._base_tags = base_tags
        self._sweep_name = sweep_name
        self._ledger_path = ledger_path
        # The spool sits next to the ledger (the shared job folder) unless told otherwise.
        default_spool = (
            ledger_path.parent / SPOOL_DIRNAME if ledger_path is not None else Path(tempfile.gettempdir()) / "orch-spool"
        )
        self._spool_dir = spool_dir or default_spool
        self._artifacts_destination = artifacts_destination
        self._flush_timeout_s = flush_timeout_s
        self._recorder_instance: AsyncMetricLogger | None = None
        self.run_ids: dict[str, str] = self._read_ledger()
        self.final_status: dict[str, str] = {}
        self._placed: dict[str, dict[str, str]] = {}
        self._resume_after: dict[str, int] = {}  # trial id -> last step a previous attempt logged
        self.redone: dict[str, tuple[int, float]] = {}  # trial id -> (steps re-done, their seconds)
        self._fence = AttemptFence.from_environment(ledger_path)

    @property
    def _recorder(self) -> AsyncMetricLogger:
        """Started on first use, in the process that uses it (Tune pickles its callbacks)."""
        if self._recorder_instance is None:
            if self._client is None:  # deferred: spool only (fsynced), delivered by `orch tracking deliver` / the agent
                self._recorder_instance = AsyncMetricLogger(None, self._spool_dir)
            else:
                from orchestrator.tracking.artifacts import ArtifactRouter

                router = ArtifactRouter(self._client, self._artifacts_destination)
                self._recorder_instance = AsyncMetricLogger(self._client, self._spool_dir, artifacts=router)
        return self._recorder_instance

    @property
    def deferred(self) -> bool:
        return self._deferred

    @property
    def spool_dir(self) -> Path:
        return self._spool_dir

    def flush(self, timeout_s: float | None = None) -> bool:
        """Deliver every queued metric and artifact (bounded wait); False if some stay spooled."""
        if self._recorder_instance is None:
            return True
        return self._recorder_instance.flush(self._flush_timeout_s if timeout_s is None else timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        if self._recorder_instance is None:
            return True
        delivered = self._recorder_instance.close(self._flush_timeout_s if timeout_s is None else timeout_s)
        self._recorder_instance = None
        if self._deferred:
            log.info(
                "MLflow: runs, metrics and artifacts spooled in %s; the agent or `orch tracking deliver %s` delivers them",
                self._spool_dir,
                self._spool_dir,
            )
        elif not delivered:
            log.warning(
                "MLflow: some metrics/artifacts are still spooled in %s; deliver them with: orch tracking deliver %s",
                self._spool_dir,
                self._spool_dir,
            )
        return delivered

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_recorder_instance"} | {"_recorder_instance": None}

    # The ledger (trial id -> MLflow run id) on disk lets a restarted job continue the same runs.
    def _read_ledger(self) -> dict[str, str]:
        if self._ledger_path is None or not self._ledger_path.exists():
            return {}
        try:
            return dict(json.loads(self._ledger_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _write_ledger(self) -> None:
        if self._ledger_path is not None:
            write_atomic(self._ledger_path, json.dumps(self.run_ids, indent=1, sort_keys=True))

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_spool_dir", Path(tempfile.gettempdir()) / "orch-spool")
        state.setdefault("_artifacts_destination", None)
        state.setdefault("_flush_timeout_s", 120.0)
        state.setdefault("_deferred", False)
        state["_recorder_instance"] = None
        state["_placed"] = {}  # a restored experiment is a new attempt: tag its placement again
        state["_resume_after"] = {}
        state.setdefault("redone", {})
        self.__dict__.update(state)
        self._fence = AttemptFence.from_environment(self._ledger_path)  # this attempt's token, not the pickled one
        self.run_ids.update(self._read_ledger())

    def _run_for(self, trial: Any) -> str:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            tags = {
                **self._base_tags,
                layout.TAG_KIND: layout.KIND_TRIAL,
                layout.TAG_TRIAL_ID: trial.trial_id,
                layout.TAG_PARENT: self._parent_run_id,
                layout.TAG_HOST: socket.gethostname(),
                **_system_tags(trial),
            }
            name, params = layout.trial_run_name(self._sweep_name, trial.trial_id), layout.trial_params(trial.config)
            if self._client is None:
                run_id = self._defer_run(name, tags, params)
            else:
                run_id = self._client.start_run(self._experiment_id, name, tags, params)
            self.run_ids[trial.trial_id] = run_id
            self._write_ledger()
        return run_id

    def _defer_run(self, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        """A local run key and its descriptor in the spool: what `start_run` would have sent, for the deliverer."""
        key = f"{DEFERRED_PREFIX}{uuid.uuid4().hex}"
        RunSpool(self._spool_dir, key).write_descriptor(
            {
                "experiment_id": self._experiment_id,
                "run_name": name,
                "tags": scrub_mapping({**tags, "orch.spool_key": key}),
                "params": scrub_mapping(params),
                "start_time": int(time.time() * 1000),
                # how the deliverer recognises the run if it created it before (answer lost, crash)
                "identity_tags": [layout.TAG_SWEEP_ID, layout.TAG_TRIAL_ID, layout.TAG_PARENT],
            }
        )
        return key

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if self._client is None:
            RunSpool(self._spool_dir, run_id).append_tags(scrub_mapping(tags))
        else:
            self._client.set_tags(run_id, tags)

    def _end_run(self, run_id: str, status: RunStatus) -> None:
        if self._client is None:
            # Everything logged so far goes to the spool first: the deliverer sets the status after it.
            if self._recorder_instance is not None:
                self._recorder_instance.flush(timeout_s=self._flush_timeout_s)
            RunSpool(self._spool_dir, run_id).record_status(status, int(time.time() * 1000))
        else:
            self._client.end_run(run_id, status)

    def end_parent(self, status: RunStatus) -> None:
        """Close the sweep's parent run; deferred: recorded in the spool, set once its children are delivered."""
        if not self._parent_run_id:
            return
        if self._client is None:
            RunSpool(self._spool_dir, self._parent_run_id).record_status(status, int(time.time() * 1000))
        else:
            self._client.end_run(self._parent_run_id, status)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        known = trial.trial_id in self.run_ids
        run_id = self._run_for(trial)
        if known:  # a restored trial continues its run: record the new attempt
            self._set_tags(run_id, {**_system_tags(trial), layout.TAG_RESUMED: "true"})
            recorded = RunSpool(self._spool_dir, run_id).recorded_status() if self._client is None else None
            if recorded is not None and recorded.is_terminal:
                RunSpool(self._spool_dir, run_id).record_status(RunStatus.RUNNING)  # closed as KILLED before the requeue
            elif self._client is not None:
                self._reopen(run_id)
            self._resume_after[trial.trial_id] = self._last_logged_step(run_id)

    def _record_recovery(self, trial_id: str, steps: int, seconds: float, resume_s: float | None) -> None:
        """Re-done work and restart time per trial and attempt, next to the run ledger (the job sums them)."""
        if self._ledger_path is None:
            return
        path = ledger_sibling(self._ledger_path, "recovery")
        try:
            data = json.loads(path.read_text()) if path.exists() else []
        except (OSError, ValueError):
            data = []
        data.append(
            {"trial_id": trial_id, "token": self._fence.token, "redone_steps": steps, "redone_s": seconds, "resume_s": resume_s}
        )
        write_atomic(path, json.dumps(data, indent=1))

    def _reopen(self, run_id: str) -> None:
        """A run closed as KILLED when its attempt died is RUNNING again while the next attempt trains."""
        try:
            if self._client is not None:
                self._client.reopen_run(run_id)
        except Exception as exc:  # the server is away: the final status is set at the end anyway
            log.warning("MLflow: could not mark run %s RUNNING again: %s", run_id, exc)

    def _last_logged_step(self, run_id: str) -> int:
        """The last step a previous attempt logged (every result logs epoch_time_s): later results up to
        it are re-done work after a restore from an older checkpoint, and are not logged twice."""
        self.flush(timeout_s=30.0)
        if self._client is None:
            return RunSpool(self._spool_dir, run_id).last_step(STEP_KEY)
        try:
            points = self._client.metric_points(run_id, STEP_KEY, timeout_s=30.0)
        except Exception as exc:  # cannot ask: better a duplicate step than a lost one
            log.warning("MLflow: could not read run %s's history (%s); re-done steps may be logged twice", run_id, exc)
            return -1
        return max((point[3] for point in points), default=-1)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if not self._fence.current():
            return  # a stale attempt woke up late: it must not write into the run
        run_id = self._run_for(trial)
        step = layout.result_step(result)
        # Before the re-done check: the result carrying the fallback is itself a re-done step (the older checkpoint).
        fallback = result.get(runtime.CHECKPOINT_FALLBACK_KEY)
        if fallback:  # the restore found its checkpoint corrupt and used an older one: say so on the run
            self._set_tags(run_id, {layout.TAG_CHECKPOINT_FALLBACK: str(fallback)[:5000]})
        if step <= self._resume_after.get(trial.trial_id, -1):
            steps, seconds = self.redone.get(trial.trial_id, (0, 0.0))
            self.redone[trial.trial_id] = (steps + 1, seconds + float(result.get("time_this_iter_s", 0.0)))
            return  # logged by the attempt before (a restore from an older checkpoint re-did it)
        if trial.trial_id in self._resume_after:  # the first new step of a resumed trial
            del self._resume_after[trial.trial_id]
            steps, seconds = self.redone.get(trial.trial_id, (0, 0.0))
            resume_s = self._fence.seconds_since_start()
            self._recorder.log(
                run_id,
                {
                    "orch_redone_steps": float(steps),
                    "orch_redone_s": seconds,
                    **({"orch_resume_s": resume_s} if resume_s is not None else {}),
                },
                step=step,
            )
            self._record_recovery(trial.trial_id, steps, seconds, resume_s)
        placement = layout.placement_tags(result)
        if placement and self._placed.get(trial.trial_id) != placement:  # first result of each attempt
            self._set_tags(run_id, placement)
            self._placed[trial.trial_id] = placement
        metrics = layout.result_metrics(result)
        if metrics:
            self._recorder.log(run_id, metrics, step=step)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        if not self._fence.current():
            return
        # Pictures are refreshed at every checkpoint, so a stopped sweep still shows its latest ones.
        self._log_checkpoint(trial, checkpoint, include_state=False)
        # Every step up to the checkpoint is delivered (or durably spooled) before training goes on:
        # a preemption after this point loses no logged step. While a preemption signal is being
        # handled the grace time is running: wait briefly (the spool keeps what is not yet sent).
        self._recorder.flush(timeout_s=2.0 if _signal_pending() else 10.0)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def _log_logs(self, trial: Any, run_id: str) -> None:
        """The trial's own stdout/stderr, and with a sweep folder the job's logs of every attempt (appended,
        one separator per attempt) and the attempts ledger, under the run's `logs/`, secrets masked."""
        sources: list[Path] = []
        trial_dir = getattr(getattr(trial, "storage", None), "trial_fs_path", None)
        if trial_dir:
            sources += [
                p
                for p in Path(trial_dir).glob("*")
                if p.is_file() and (p.name in ("stdout", "stderr") or p.suffix in (".out", ".err"))
            ]
        if self._ledger_path is not None:
            root = self._ledger_path.parent
            sources += sorted(root.glob("submitit/*/*_log.out")) + sorted(root.glob("submitit/*/*_log.err"))
            sources += sorted(root.glob("attempts*.json"))
        if not sources:
            return
        with tempfile.TemporaryDirectory() as folder:
            for source in sources:
                name = f"trial_{source.name}" if trial_dir and source.parent == Path(trial_dir) else source.name
                try:
                    scrub_file(source, Path(folder) / name)
                except OSError:
                    continue
            self._recorder.log_artifacts(run_id, Path(folder), "logs")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        if trial.checkpoint is not None:
            self._log_checkpoint(trial, trial.checkpoint, include_state=True)
        self._log_logs(trial, run_id)
        self._end_run(run_id, RunStatus.FINISHED)
        self.final_status[trial.trial_id] = RunStatus.FINISHED

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        self._set_tags(run_id, {layout.TAG_ERROR: _trial_error(trial)})
        self._log_logs(trial, run_id)
        self._end_run(run_id, RunStatus.FAILED)
        self.final_status[trial.trial_id] = RunStatus.FAILED

    def close_unfinished(self, status: RunStatus = RunStatus.KILLED) -> None:
        """Close runs of trials that never ended (sweep interrupted), never leaving them RUNNING."""
        for trial_id, run_id in self.run_ids.items():
            if trial_id not in self.final_status:
                self._end_run(run_id, status)
                self.final_status[trial_id] = status

    def _log_checkpoint(self, trial: Any, checkpoint: Any, include_state: bool) -> None:
        run_id = self._run_for(trial)
        with checkpoint.as_directory() as directory:
            folder = Path(directory)
            pictures = folder / layout.ARTIFACT_PICTURES
            if pictures.is_dir():
                self._recorder.log_artifacts(run_id, pictures, layout.ARTIFACT_PICTURES)
            if include_state:
                self._recorder.log_artifacts(run_id, folder, layout.ARTIFACT_CHECKPOINT)


STEP_KEY = "epoch_time_s"  # logged with every result (layout.result_metrics)


class AttemptFence:
    """A fencing token per job attempt: the job entry writes its token to `attempt.json` next to the run
    ledger when it starts; a tracker whose token is no longer the file's (a newer attempt has started)
    stops writing. Checked at most once a second (one small read on the shared filesystem)."""

    def __init__(self, path: Path | None, token: str | None) -> None:
        self.path, self.token = path, token
        self._checked_at, self._current, self._warned = 0.0, True, False

    @classmethod
    def from_environment(cls, ledger_path: Path | None) -> AttemptFence:
        token = runtime.attempt_token() or None
        path = ledger_sibling(ledger_path, "attempt") if ledger_path is not None else None
        return cls(path if token else None, token)

    def seconds_since_start(self) -> float | None:
        """Seconds since this attempt started (attempt.json), e.g. from requeue to training resumed."""
        try:
            return time.time() - float(json.loads(self.path.read_text())["started_at"]) if self.path else None
        except (OSError, ValueError, KeyError):
            return None

    def current(self) -> bool:
        if self.path is None:
            return True
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            try:
                holder = json.loads(self.path.read_text()).get("token")
            except (OSError, ValueError):
                holder = self.token  # no file yet: nobody newer
            self._current = holder == self.token
            if not self._current and not self._warned:
                log.warning(
                    "a newer attempt (%s) owns this sweep's runs: this attempt (%s) stops writing to MLflow", holder, self.token
                )
                self._warned = True
        return self._current


def error_line(error: BaseException | str) -> str:
    """The line of a trial's error that says what went wrong (Tune wraps the trainable's own exception and
    its traceback; the last line is the exception itself)."""
    text = error if isinstance(error, str) else str(getattr(error, "cause", None) or error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else (type(error).__name__ if not isinstance(error, str) else "trial failed")


def _trial_error(trial: Any) -> str:
    """What a failed trial raised, from the error file Tune just wrote on this machine (its copy in the trial's
    storage, which `Trial.get_error` reads, arrives later)."""
    try:
        return error_line(Path(trial.error_file).read_text())
    except (OSError, TypeError, AttributeError):
        return "trial failed"


def _signal_pending() -> bool:
    """The job is handling SLURM's signal (its grace time is running): keep waits short."""
    return runtime.checkpoint_requested_at() is not None


def _system_tags(trial: Any) -> dict[str, str]:
    """Where and how often a trial ran: SLURM job, GPU type, attempt (Tune retries + SLURM requeues)."""
    job_attempt = runtime.attempt_index()
    if job_attempt is None:
        job_attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    attempt = int(getattr(trial, "num_failures", 0) or 0) + job_attempt
    tags = {layout.TAG_ATTEMPT: str(attempt), layout.TAG_GPU_TYPE: _gpu_type()}
    if os.environ.get("SLURM_JOB_ID"):
        tags[layout.TAG_SLURM_JOB_ID] = os.environ["SLURM_JOB_ID"]
    return tags


def _gpu_type() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # no torch, or a broken driver: the tag says so instead of failing the sweep
        return "unknown"
