"""The agent's view of a real SLURM cluster, from the login node: squeue/sacct/scancel through
`SlurmClient`, submits through the same code `orch submit` runs (`orchestrator.login.sweeps.submit`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.adaptors.slurm import JobRecord, QueueJob, SlurmClient, SlurmError
from cluster.slurm.job_spec import SWEEP_JOB_PREFIX
from orchestrator.kernel.states import TrialState, TrialStatus
from orchestrator.kernel.sweep_folder import Bundle
from orchestrator.login.queue.agent import SubmitDeferred, SubmitRefused, TrialCounts
from orchestrator.login.queue.rows import SweepRow, TrialRow


@dataclass(frozen=True)
class SlurmPort:
    env: Mapping[str, str]

    @property
    def client(self) -> SlurmClient:
        return SlurmClient(env=self.env)

    def snapshot(self) -> list[QueueJob]:
        return self.client.queue_snapshot(SWEEP_JOB_PREFIX)

    def history(self, names: Sequence[str]) -> list[JobRecord]:
        return self.client.jobs_named(names)

    def submit(self, bundle: str) -> list[str]:
        from orchestrator.kernel.errors import RemoteError, TrackingUnavailable
        from orchestrator.login.sweeps import submit

        try:
            return list(submit(Path(bundle)).job_ids)
        except TrackingUnavailable as exc:
            raise SubmitDeferred(f"{exc.key}: {exc.problem}") from None
        except RemoteError as exc:
            raise SubmitRefused(f"{exc.key}: {exc.problem}; fix: {exc.fix}") from None
        except SlurmError as exc:
            raise SubmitRefused(f"slurm: {exc.message}") from None

    def submit_in_flight(self, bundle: str) -> bool:
        """Is an `sbatch` for this sweep folder still running (one a killed agent left behind)?"""
        needle = str(bundle).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0].decode(errors="replace")) == "sbatch" and any(needle in a for a in argv):
                return True
        return False

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.client.cancel(job_ids)

    def adopt(self, bundle: str, job_ids: Sequence[str]) -> list[str]:
        """What a killed agent's submit did not get to do: submitit's bookkeeping and the release of the job it
        submitted held, and the sweep folder's jobs.json. The pickles it had to move."""
        from cluster.slurm.submitit_backend import complete_submission, task_ids
        from orchestrator.kernel.files import write_atomic

        folder = Bundle(Path(bundle))
        if not folder.root.exists():
            return []
        moved = complete_submission(folder, job_ids, dict(self.env))
        if not folder.jobs_file.exists():
            write_atomic(folder.jobs_file, json.dumps(task_ids(folder, job_ids)))
        return moved

    def release(self, job_ids: Sequence[str]) -> None:
        self.client.release(job_ids)

    def deliver_tracking(self, row: SweepRow) -> int:
        """For profiles whose compute nodes never reach MLflow (tracking.nodes_reach_server: false): deliver the
        sweep's spool (runs, metrics, artifacts, statuses) from here, the login node. Idempotent."""
        bundle = Bundle(Path(row.bundle))
        spool = bundle.spool_dir
        if not spool.is_dir() or not bundle.manifest_file.exists():
            return 0
        manifest = bundle.manifest()
        if manifest.profile().tracking.nodes_reach_server:
            return 0
        from orchestrator.tracking.client import TrackingClient
        from orchestrator.tracking.spool import deliver_spool

        try:
            return deliver_spool(spool, TrackingClient(manifest.tracking_uri)).delivered
        except Exception:  # MLflow away: the points stay spooled for the next tick
            return 0

    def close_runs(self, row: SweepRow) -> int:
        """Close the MLflow runs (trials and parent) an ended sweep left RUNNING, as KILLED."""
        from orchestrator.login.sweeps import close_runs

        bundle = Bundle(Path(row.bundle))
        if not bundle.manifest_file.exists():
            return 0
        try:
            return close_runs(bundle.manifest(), bundle)
        except Exception:  # MLflow away: the next `orch cancel`/agent pass closes them; the queue goes on
            return 0

    def trials(self, row: SweepRow) -> TrialCounts | None:
        from orchestrator.login.sweeps import sweep_trials

        bundle = Bundle(Path(row.bundle))
        if not bundle.root.exists():
            return None
        trials = sweep_trials(bundle, list(row.job_ids))
        states = [TrialState.from_tune(TrialStatus.parse(t.get("state"))) for t in trials]
        metrics = [float(t["metric"]) for t in trials if isinstance(t.get("metric"), (int, float)) and math.isfinite(t["metric"])]
        best = (min(metrics) if row.mode == "min" else max(metrics)) if metrics else None
        rows = tuple(
            TrialRow(
                str(t["trial_id"]),
                state.value,
                int(t.get("epoch") or 0),
                float(t["metric"]) if isinstance(t.get("metric"), (int, float)) else None,
            )
            for t, state in zip(trials, states)
        )
        return TrialCounts(
            done=sum(s.done for s in states),
            running=sum(s == TrialState.RUNNING for s in states),
            pending=sum(s in (TrialState.PENDING, TrialState.PAUSED) for s in states),
            best=best,
            rows=rows,
        )
