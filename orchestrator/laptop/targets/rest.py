"""The laptop side of `orch submit|status|cancel` through a site's slurmrestd (profile `rest:`).

Submit sends one small job whose script carries the code snapshot and manifest (see
orchestrator/laptop/targets/rest_job.py), waits (bounded) until it has submitted the sweep's own jobs, and
reads its answer back from the job's Comment. Status and cancel ask the REST API for every
job with ONE request and match ours by their Comment (`orch-sweep=ID`); trials are read
from the MLflow tracking server, since the REST API cannot read the sweep folder.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.adaptors.slurmrest import SlurmRestClient, SlurmRestError
from cluster.slurm.job_spec import refused_key
from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.config.models import RestSlurmProfile
from orchestrator.kernel.errors import ConfigError, OrchError, RemoteError
from orchestrator.kernel.states import RunStatus
from orchestrator.laptop.targets.rest_job import MAX_SCRIPT_BYTES, answer_of, submit_job_fields, submit_script
from orchestrator.laptop.targets.ssh import prepare_submit
from orchestrator.login import wire

_SWEEP_COMMENT = re.compile(r"\borch-(sweep|submit)=(\S+)")
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class RestTarget:
    """A SLURM profile reached through slurmrestd."""

    profile: RestSlurmProfile
    profile_file: Path
    client: SlurmRestClient

    @classmethod
    def of(cls, profile: RestSlurmProfile, profile_file: Path) -> RestTarget:
        rest = profile.rest
        token = _read_token(profile_file, rest.token_file, rest.token_env)
        client = SlurmRestClient(rest.url, rest.user, token, rest.api_version, rest.timeout_s)
        try:
            client.check_token()
        except SlurmRestError as exc:
            raise ConfigError(
                profile_file, "rest.token_file" if rest.token_file else "rest.token_env", exc.problem, exc.fix
            ) from None
        return cls(profile, profile_file, client)

    @property
    def workdir(self) -> str:
        return self.profile.remote.workdir

    def error(self, exc: SlurmRestError) -> RemoteError:
        """One line naming the profile key to look at; exit 2 like every refused submit."""
        if exc.kind == "auth":
            key = "rest.token_file" if self.profile.rest.token_file else "rest.token_env"
        elif exc.kind in ("connection", "protocol"):
            key = "rest.url"
        else:
            key = refused_key(exc.problem)
        return RemoteError(key, exc.problem, exc.fix, where=self.profile_file)


def _read_token(profile_file: Path, token_file: str | None, token_env: str) -> str:
    if token_file:
        path = Path(os.path.expanduser(token_file))
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                profile_file,
                "rest.token_file",
                f"cannot read {path} ({exc.strerror})",
                "write the output of `scontrol token` there (mode 600)",
            ) from None
    else:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise ConfigError(
                profile_file,
                "rest.token_env",
                f"{token_env} is not set",
                f"export {token_env}=... from `scontrol token lifespan=SECONDS`, or set rest.token_file",
            )
    return token.partition("SLURM_JWT=")[2].strip() or token


# ---------------------------------------------------------------------------- submit
def submit(resolved: ResolvedSweep, target: RestTarget, tracking_uri: str, sweep_id: str) -> tuple[wire.SubmitAnswer, list[str]]:
    """Send the submit job and wait for its answer (at most rest.submit_wait_s)."""
    profile = target.profile
    prepared = prepare_submit(resolved, profile, tracking_uri, sweep_id)
    script = submit_script(profile.remote, profile.remote.workdir, sweep_id, prepared.code_archive, prepared.bundle_archive)
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise ConfigError(
            resolved.file,
            "code",
            f"the code snapshot makes a {len(script) / 1e6:.1f} MB job script, over what "
            f"slurmctld accepts ({MAX_SCRIPT_BYTES / 1e6:.1f} MB)",
            "keep data and large files out of git, or use the ssh transport",
        )
    try:
        job_id = target.client.submit(script, submit_job_fields(profile.slurm, profile.remote, sweep_id))
    except SlurmRestError as exc:
        raise target.error(exc) from None
    answer = _await_answer(target, job_id, profile.rest.submit_wait_s)
    if answer is None:
        return wire.SubmitAnswer(sweep_id=sweep_id, job_ids=[], submit_job_id=job_id, pending=True), prepared.warnings
    submitted = wire.read(wire.SubmitAnswer, wire.checked(answer, target.profile_file), target.profile_file)
    return submitted.model_copy(update={"submit_job_id": job_id}), prepared.warnings


def _await_answer(target: RestTarget, job_id: str, wait_s: float) -> dict[str, Any] | None:
    """The submit job's answer from its Comment; None when it has not run within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            job = target.client.job(job_id)
        except SlurmRestError as exc:
            raise target.error(exc) from None
        if job is not None:
            answer = answer_of(job.comment)
            if answer is not None:
                return answer
            if job.state.is_ended:
                return {
                    "ok": False,
                    "code": 1,
                    "error": {
                        "key": "remote",
                        "problem": f"the submit job {job_id} ended {job.state.value} ({job.reason}) without an answer",
                        "fix": f"read {target.workdir}/submit-logs/{job_id}.log on the cluster",
                    },
                }
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL_S)


# ---------------------------------------------------------------------------- status
def sweeps_on_cluster(target: RestTarget, sweep_id: str | None) -> list[wire.SweepStatus]:
    """The sweeps SLURM still knows of (ONE REST request), with their trials from MLflow."""
    try:
        jobs = target.client.jobs()
    except SlurmRestError as exc:
        raise target.error(exc) from None
    by_sweep: dict[str, list[wire.JobStatus]] = {}
    for job in jobs:
        match = _SWEEP_COMMENT.search(job.comment)
        if not match or (sweep_id and match.group(2) != sweep_id):
            continue
        kind = "submit job" if match.group(1) == "submit" else "job"
        by_sweep.setdefault(match.group(2), []).append(
            wire.JobStatus(
                job_id=job.display_id,
                state=job.state,
                name=job.name,
                node_list=job.nodes,
                kind=kind,
                restarts=job.restarts,
                reason=job.reason,
            )
        )
    runs = _parent_runs(target, sweep_id)
    if sweep_id and sweep_id not in by_sweep and sweep_id not in runs:
        raise RemoteError(
            "sweep",
            f"no sweep '{sweep_id}' known to SLURM or MLflow",
            f"list sweeps with: orch status --cluster {target.profile.name}",
            where=target.profile_file,
        )
    sweeps = []
    for sid in sorted(set(by_sweep) | set(runs)):
        parent = runs.get(sid)
        sweeps.append(
            wire.SweepStatus(
                sweep_id=sid,
                project=parent["project"] if parent else "?",
                submitted_at=parent["start_time"] if parent else time.time(),
                cancelled=bool(parent and parent["status"] == RunStatus.KILLED),
                jobs=[j for j in by_sweep.get(sid, []) if j.kind == "job"],
                trials=[wire.TrialRecord.model_validate(t) for t in _trials(target, parent)] if parent else [],
                parent_run_id=parent["run_id"] if parent else None,
            )
        )
    return sweeps


def _tracking(target: RestTarget) -> Any:
    """The MLflow adaptor for the profile's tracking store (the one order: environment, then profile), or None."""
    from orchestrator.laptop.tracking_uri import find_tracking
    from orchestrator.tracking.client import TrackingClient

    found = find_tracking(None, target.profile.tracking, target.profile_file)
    return TrackingClient(found.uri) if found is not None else None


def _parent_runs(target: RestTarget, sweep_id: str | None) -> dict[str, dict[str, Any]]:
    from orchestrator.kernel import tracking_layout as layout

    tracking = _tracking(target)
    if tracking is None:
        return {}
    tags = {layout.TAG_KIND: layout.KIND_SWEEP, layout.TAG_CLUSTER: target.profile.name}
    if sweep_id:
        tags[layout.TAG_SWEEP_ID] = sweep_id.replace("'", "").replace("`", "")
    found = {}
    for run in tracking.search_runs(None, tags, max_results=1000):
        found[run.tags[layout.TAG_SWEEP_ID]] = {
            "run_id": run.run_id,
            "experiment_id": run.experiment_id,
            "status": run.status,
            "project": run.tags.get(layout.TAG_PROJECT, "?"),
            "start_time": run.start_time_s,
            "metric": run.params.get("metric"),
        }
    return found


def _trials(target: RestTarget, parent: dict[str, Any]) -> list[dict[str, Any]]:
    from orchestrator.kernel import tracking_layout as layout

    tracking = _tracking(target)
    trials = []
    metric = parent.get("metric")
    for run in tracking.search_runs([parent["experiment_id"]], {layout.TAG_PARENT: parent["run_id"]}):
        history = tracking.metric_history(run.run_id, metric) if metric in run.metrics else []
        trials.append(
            {
                "trial_id": run.tags.get(layout.TAG_TRIAL_ID, run.run_id),
                "state": run.status.value,
                "epoch": max((step for step, _ in history), default=0),
                "metric": run.metrics.get(metric) if metric else None,
            }
        )
    return trials


# ---------------------------------------------------------------------------- cancel
def cancel(target: RestTarget, sweep_id: str) -> wire.CancelAnswer:
    """Cancel every job of the sweep (its submit job too) and close its MLflow runs as KILLED."""
    try:
        jobs = [job for job in target.client.jobs() if (m := _SWEEP_COMMENT.search(job.comment)) and m.group(2) == sweep_id]
    except SlurmRestError as exc:
        raise target.error(exc) from None
    runs = _parent_runs(target, sweep_id)
    if not jobs and sweep_id not in runs:
        raise RemoteError(
            "sweep",
            f"no sweep '{sweep_id}' known to SLURM or MLflow",
            f"list sweeps with: orch status --cluster {target.profile.name}",
            where=target.profile_file,
        )
    live = sorted({job.job_id if not job.array_job_id else job.array_job_id for job in jobs if not job.state.is_ended})
    try:
        target.client.cancel(live)
    except SlurmRestError as exc:
        raise target.error(exc) from None
    closed = 0
    if sweep_id in runs:
        closed = _close_runs(target, runs[sweep_id])
    return wire.CancelAnswer(sweep_id=sweep_id, cancelled_jobs=live, closed_runs=closed)


def _close_runs(target: RestTarget, parent: dict[str, Any]) -> int:
    from orchestrator.kernel import tracking_layout as layout

    tracking = _tracking(target)
    children = tracking.search_runs([parent["experiment_id"]], {layout.TAG_PARENT: parent["run_id"]})
    return int(tracking.close_running([run.run_id for run in children] + [parent["run_id"]], RunStatus.KILLED))


def logs_unavailable(target: RestTarget) -> OrchError:
    return RemoteError(
        "rest",
        "slurmrestd cannot read log files",
        f"read them on a machine with the cluster's filesystem under "
        f"{target.workdir}/sweeps/SWEEP, or give the profile a login: section (ssh)",
        where=target.profile_file,
    )
