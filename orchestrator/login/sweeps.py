"""The login node's sweep service, a library: submit, resume, status, logs, cancel of the sweeps in
a profile's `remote.workdir`. The laptop reaches it through `python -m orchestrator.login`
(the thin command-line entry, `__main__.py`); the queue's agent calls it directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.adaptors.slurm import SlurmClient, SlurmError
from cluster.slurm.container import check_runtime, image_tags
from cluster.slurm.job_spec import refused_key, sweep_job, sweep_job_name
from orchestrator.kernel.config.models import SlurmProfile, SlurmSettings
from orchestrator.kernel.errors import RemoteError, TrackingUnavailable
from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import JobState, RunStatus, TrialStatus
from orchestrator.kernel.sweep_folder import Bundle, BundleManifest
from orchestrator.login.wire import (
    CancelAnswer,
    JobStatus,
    ResumeAnswer,
    StatusAnswer,
    SubmitAnswer,
    SweepStatus,
    TrialRecord,
)


# ---------------------------------------------------------------------------- submit
def submit(bundle_root: Path) -> SubmitAnswer:
    """Submit the sweep unpacked in `bundle_root`; a sweep whose jobs.json exists is not submitted twice."""
    from cluster.slurm.submitit_backend import submit_sweep

    bundle = Bundle(bundle_root)
    manifest = bundle.manifest()
    if bundle.jobs_file.exists():  # an agent restarted after sbatch: answer what was submitted
        return SubmitAnswer(
            sweep_id=manifest.sweep_id,
            job_ids=bundle.read_json(bundle.jobs_file, []),
            parent_run_id=manifest.parent_run_id,
            experiment_id=manifest.experiment_id,
            bundle=str(bundle.root),
        )
    profile = manifest.profile()
    resolved = load_bundle_sweep(bundle)
    preflight(profile, manifest.sweep_id)
    settings = profile.slurm
    if settings.fit_time_limit:
        settings = _fit_time_limit(profile, bundle, manifest.sweep_id)
    shards = None
    if profile.slurm.layout == "array":  # every trial materialised now, dealt into shards: one array task each
        from cluster.node.shards import plan_shards, write_plan

        plan = plan_shards(resolved, profile.slurm.shards)
        write_plan(bundle.shards_file, plan)
        shards = len(plan.shards)
    parent_run_id, experiment_id = _open_parent_run(bundle, manifest, resolved, profile, shards)
    # The jobs read the parent run from the manifest: it is written before they can start.
    bundle.write_manifest(BundleManifest(**{**manifest.__dict__, "parent_run_id": parent_run_id, "experiment_id": experiment_id}))
    try:
        jobs = submit_sweep(settings, profile.remote, manifest.sweep_id, bundle, shards)
    except Exception as exc:  # nothing half-queued: the parent run goes away with the failed submit
        _discard_parent_run(manifest.tracking_uri, parent_run_id)
        bundle.write_manifest(manifest)
        raise RemoteError(
            "slurm",
            f"sbatch failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}",
            "check the profile's slurm section against the cluster",
            exit_code=1,
        ) from None
    write_atomic(bundle.jobs_file, json.dumps([job.job_id for job in jobs]))
    return SubmitAnswer(
        sweep_id=manifest.sweep_id,
        job_ids=[job.job_id for job in jobs],
        parent_run_id=parent_run_id,
        experiment_id=experiment_id,
        bundle=str(bundle.root),
    )


def _fit_time_limit(profile: SlurmProfile, bundle: Bundle, sweep_id: str) -> SlurmSettings:
    """The profile's SLURM settings with the time limit that starts earliest; the choice is kept in time_fit.json."""
    from cluster.slurm.time_fit import fit_time_limit

    client = SlurmClient(env=profile.remote.env)

    def test_only(settings: Any) -> str:
        try:
            return client.test_only(sweep_job(settings, sweep_id).sbatch_args())
        except SlurmError:
            return ""  # a limit the cluster refuses is simply not a candidate

    fit = fit_time_limit(profile.slurm, test_only)
    write_atomic(
        bundle.time_fit_file,
        json.dumps(
            {"time_limit_min": fit.time_limit_min, "max_requeues": fit.max_requeues, "starts": fit.starts, "reason": fit.reason}
        ),
    )
    return profile.slurm.model_copy(update={"time_limit_min": fit.time_limit_min, "max_requeues": fit.max_requeues})


def load_bundle_sweep(bundle: Bundle) -> Any:
    """The sweep of a bundle, loaded from its own code snapshot; RemoteError when it does not validate."""
    from orchestrator.kernel.config.loading import load_sweep
    from orchestrator.kernel.errors import ConfigError

    try:
        return load_sweep(bundle.code / bundle.manifest().sweep_file)
    except ConfigError as exc:
        raise RemoteError(exc.key, f"{exc.file}: {exc.problem}", exc.fix) from None


def preflight(profile: SlurmProfile, sweep_id: str) -> None:
    """Ask the cluster before anything is queued: its container runtime, the partition, its MaxTime, and
    `sbatch --test-only` of the very job the sweep will submit."""
    client = SlurmClient(env=profile.remote.env)
    try:
        check_runtime(profile.remote, client)
        # SLURM accepts a job longer than its partition allows and leaves it pending forever.
        max_time = client.partition_max_time_min(profile.slurm.partition)
        if max_time is not None and profile.slurm.time_limit_min > max_time:
            raise RemoteError(
                "slurm.time_limit_min",
                f"time limit {profile.slurm.time_limit_min} min is over partition "
                f"'{profile.slurm.partition}' MaxTime of {max_time} min",
                f"ask for at most {max_time} min; checkpoints and requeues carry longer trials",
            )
        client.test_only(sweep_job(profile.slurm, sweep_id).sbatch_args())
    except SlurmError as exc:
        raise RemoteError(
            refused_key(exc.message),
            f"the cluster refuses this job: {exc.message}",
            "ask for what the cluster has (sinfo; scontrol show partition)",
        ) from None


def _open_parent_run(
    bundle: Bundle, manifest: BundleManifest, resolved: Any, profile: SlurmProfile, shards: int | None = None
) -> tuple[str, str]:
    """The sweep's parent MLflow run, created before any job exists (jobs attach to it); a submit repeated
    after a crash continues the same one."""
    from cluster.slurm.job_spec import cpus_per_node
    from orchestrator.kernel.config.resources import MachineResources, max_concurrent
    from orchestrator.kernel.tracking_layout import SweepIdentity
    from orchestrator.tracking.client import TrackingClient, TrackingError
    from orchestrator.tracking.sweep_run import open_sweep_run

    settings = profile.slurm
    held = MachineResources(cpus_per_node(settings) * settings.nodes, settings.gpus_per_node * settings.nodes)
    identity = SweepIdentity(
        manifest.sweep_id,
        manifest.sweep_name,
        manifest.project,
        resolved.project.runs,
        str(manifest.code.get("commit", "unknown")),
        bool(manifest.code.get("dirty", False)),
        profile.name,
    )
    diff = bundle.diff_file.read_text(errors="replace") if bundle.diff_file.exists() else ""
    client = TrackingClient(manifest.tracking_uri)
    problem = client.unreachable()  # in seconds, where MLflow's own client retries for minutes
    if problem is not None:
        raise TrackingUnavailable(
            "tracking.uri",
            f"{manifest.tracking_uri} (from the login node): {problem}",
            "start the tracking server, or set tracking.uri to one the cluster reaches",
        )
    try:
        return open_sweep_run(
            client,
            resolved,
            identity,
            max_concurrent(resolved.sweep, held, shards or 1),
            shards=shards,
            diff=diff,
            untracked=list(manifest.code.get("untracked", [])),
            reuse=True,
            container_tags=image_tags(profile.remote.container),
        )
    except TrackingError as exc:
        raise RemoteError("tracking.uri", str(exc), "start the tracking server or fix tracking.uri in the profile") from None
    except Exception as exc:  # MLflow's own errors: the server went away mid-way (retried for minutes), refused request
        error = TrackingUnavailable if _server_went_away(exc) else RemoteError
        raise error(
            "tracking.uri",
            f"MLflow at {manifest.tracking_uri} failed: {str(exc).splitlines()[0][:200]}",
            "start the tracking server or fix tracking.uri in the profile",
        ) from None


def _server_went_away(exc: BaseException) -> bool:
    """MLflow's error after its own retries when the server stopped answering (no connection, or a 502/503/504
    of a proxy in front of it), as opposed to a request the server refused."""
    import re

    text = str(exc)
    gone = ("Max retries exceeded", "Connection refused", "Connection aborted", "RemoteDisconnected")
    return any(sign in text for sign in gone) or re.search(r"error code 50[234]\b", text) is not None


def _discard_parent_run(tracking_uri: str, run_id: str) -> None:
    from orchestrator.tracking.client import TrackingClient

    try:
        TrackingClient(tracking_uri).delete_run(run_id)
    except Exception:  # best effort: the submit error is what the user needs to see
        pass


# ---------------------------------------------------------------------------- resume
def config_hash_of(bundle: Bundle) -> str:
    """SHA-256 of the sweep file and its project file as the sweep was submitted (in its snapshot)."""
    from orchestrator.kernel.config.loading import sweep_files_hash

    return sweep_files_hash(load_bundle_sweep(bundle))


def resume(bundle_root: Path, config_hash: str | None, force: bool) -> ResumeAnswer:
    """Submit the sweep again under the same trial ids and MLflow runs: its job restores the Tune
    experiment (finished trials stay finished, unfinished and failed ones continue from their last
    checkpoints). Refused while a job of the sweep is alive, and if the sweep's config changed."""
    from cluster.slurm.submitit_backend import submit_sweep

    bundle = Bundle(bundle_root)
    if not bundle.manifest_file.exists():
        raise RemoteError("sweep", f"no sweep in {bundle_root}", "list sweeps with: orch status --cluster NAME")
    manifest = bundle.manifest()
    profile = manifest.profile()
    if config_hash is not None and config_hash != config_hash_of(bundle) and not force:
        raise RemoteError(
            "sweep",
            f"the sweep file or its project file changed since sweep {manifest.sweep_id} was submitted",
            "resume it as it was with --force, or submit the changed sweep as a new one",
        )
    client = SlurmClient(env=profile.remote.env)
    alive = [j for j in client.queue_snapshot(sweep_job_name(manifest.sweep_id)) if not j.state.is_ended]
    if alive:
        raise RemoteError(
            "sweep",
            f"sweep {manifest.sweep_id} still has live jobs ({', '.join(j.job_id for j in alive)})",
            "wait for them to end, or stop them with: orch cancel SWEEP",
        )
    shards = None
    if bundle.shards_file.exists():
        from cluster.node.shards import read_plan

        shards = len(read_plan(bundle.shards_file).shards)
    bundle.cancelled_marker.unlink(missing_ok=True)
    if manifest.parent_run_id:
        _reopen_parent(manifest)
    jobs = submit_sweep(profile.slurm, profile.remote, manifest.sweep_id, bundle, shards)
    earlier = bundle.read_json(bundle.jobs_file, [])
    write_atomic(bundle.jobs_file, json.dumps([*earlier, *[job.job_id for job in jobs]]))
    trials = sweep_trials(bundle, earlier)
    unfinished = [t["trial_id"] for t in trials if TrialStatus.parse(t.get("state")) != TrialStatus.TERMINATED]
    return ResumeAnswer(
        sweep_id=manifest.sweep_id,
        job_ids=[job.job_id for job in jobs],
        resumed_trials=unfinished,
        finished_trials=len(trials) - len(unfinished),
    )


def _reopen_parent(manifest: BundleManifest) -> None:
    from orchestrator.tracking.client import TrackingClient

    if not manifest.parent_run_id:
        return
    try:
        TrackingClient(manifest.tracking_uri).reopen_run(manifest.parent_run_id)
    except Exception:  # the job's tracker ends it with the right status anyway
        pass


# ---------------------------------------------------------------------------- status
def status(workdir: Path, sweep_id: str | None) -> StatusAnswer:
    from cluster.adaptors.slurm import SlurmClient, held_after_failed_launch
    from orchestrator.kernel.sweep_folder import SWEEPS_DIRNAME

    root = workdir / SWEEPS_DIRNAME
    folders = [root / sweep_id] if sweep_id else sorted(p for p in root.glob("*") if (p / "bundle.json").exists())
    if sweep_id and not (root / sweep_id / "bundle.json").exists():
        raise RemoteError("sweep", f"no sweep '{sweep_id}' under {root}", "list sweeps with: orch status --cluster NAME")
    bundles = [Bundle(folder) for folder in folders]
    job_ids = {b.root.name: b.read_json(b.jobs_file, []) for b in bundles}
    env = bundles[0].manifest().profile().remote.env if bundles else {}
    client = SlurmClient(env=env)
    records = client.jobs(j for ids in job_ids.values() for j in ids)  # ONE sacct call
    # A direct submit has no agent watching it: a job SLURM held after a failed launch is released here
    # (squeue's reason: sacct's can lag).
    waiting = [
        j
        for b in bundles
        if not b.cancelled_marker.exists()
        for j in job_ids[b.root.name]
        if (r := record_for(j, records)) is not None and r.state.is_waiting
    ]
    held = {j: r.reason for j, r in client.queued(waiting).items() if held_after_failed_launch(r.state, r.reason)}
    client.release(sorted(held))
    sweeps = []
    for bundle in bundles:
        manifest = bundle.manifest()
        jobs = []
        for j in job_ids[bundle.root.name]:
            record = record_for(j, records)
            known = (
                {
                    "name": record.name,
                    "node_list": record.node_list,
                    "elapsed": record.elapsed,
                    "restarts": record.restarts,
                    "reason": held.get(j, record.reason),
                    "alloc_tres": record.alloc_tres,
                }
                if record
                else {}
            )
            jobs.append(JobStatus(job_id=j, state=record.state if record else JobState.UNKNOWN, released=j in held, **known))
        sweeps.append(
            SweepStatus(
                sweep_id=manifest.sweep_id,
                project=manifest.project,
                submitted_at=manifest.submitted_at,
                cancelled=bundle.cancelled_marker.exists(),
                jobs=jobs,
                trials=[TrialRecord.model_validate(t) for t in sweep_trials(bundle, job_ids[bundle.root.name])],
                parent_run_id=manifest.parent_run_id,
                code=manifest.code.get("commit"),
            )
        )
    return StatusAnswer(sweeps=sweeps)


def record_for(job_id: str, records: dict[str, Any]) -> Any:
    """sacct's/squeue's record of a job or array task; a task not yet started is in its array's
    pending record (`123_[2-3]`, `123_[0,2-3%4]`)."""
    if job_id in records:
        return records[job_id]
    base, _, task = job_id.partition("_")
    if not task.isdigit():
        return None
    for key, record in records.items():
        head, _, ranges = key.partition("_[")
        if head != base or not ranges:
            continue
        for part in ranges.rstrip("]").split("%")[0].split(","):
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= int(task) <= int(high or low):
                return record
    return None


def sweep_trials(bundle: Bundle, job_ids: list[str]) -> list[dict[str, Any]]:
    """Trial states of a sweep; with shards, every materialised trial (PENDING until its task runs it)."""
    from cluster.node.shards import read_plan

    trials: dict[str, dict[str, Any]] = {}
    if bundle.shards_file.exists():
        for shard in read_plan(bundle.shards_file).shards:
            job_id = job_ids[shard.index] if shard.index < len(job_ids) else None
            for trial in shard.trials:
                trials[trial.trial_id] = {
                    "trial_id": trial.trial_id,
                    "state": TrialStatus.PENDING.value,
                    "epoch": 0,
                    "metric": None,
                    "shard": shard.index,
                    "job_id": job_id,
                }
    for shard_index, path in bundle.trials_files().items():
        for trial_id, entry in bundle.read_json(path, {}).get("trials", {}).items():
            trials[trial_id] = {
                **trials.get(trial_id, {}),
                **entry,
                **({"shard": shard_index} if shard_index is not None else {}),
            }
    return sorted(trials.values(), key=lambda trial: trial["trial_id"])


# ---------------------------------------------------------------------------- logs
def log_files(workdir: Path, sweep_id: str, trial_id: str | None) -> list[Path]:
    from orchestrator.kernel.sweep_folder import SWEEPS_DIRNAME

    bundle = Bundle(workdir / SWEEPS_DIRNAME / sweep_id)
    if not bundle.manifest_file.exists():
        raise RemoteError("sweep", f"no sweep '{sweep_id}'", "list sweeps with: orch status --cluster NAME")
    if trial_id is None:
        return sorted(bundle.submitit_dir.glob("*/*_log.*"))
    experiments = bundle.experiment_dirs(sweep_id)  # one, or one per shard
    trial_dir = next((e / trial_id for e in experiments if (e / trial_id).is_dir()), None)
    if trial_dir is None:
        known = sorted(p.name for e in experiments for p in e.glob("*") if p.is_dir())
        raise RemoteError("trial", f"no trial '{trial_id}' in sweep {sweep_id}", f"use one of: {', '.join(known) or 'none yet'}")
    return sorted(p for p in trial_dir.iterdir() if p.name in ("stdout", "stderr") or p.suffix in (".out", ".err", ".log"))


# ---------------------------------------------------------------------------- cancel
def cancel(workdir: Path, sweep_id: str) -> CancelAnswer:
    from cluster.adaptors.slurm import SlurmClient
    from orchestrator.kernel.sweep_folder import SWEEPS_DIRNAME

    bundle = Bundle(workdir / SWEEPS_DIRNAME / sweep_id)
    if not bundle.manifest_file.exists():
        raise RemoteError("sweep", f"no sweep '{sweep_id}'", "list sweeps with: orch status --cluster NAME")
    manifest = bundle.manifest()
    write_atomic(bundle.cancelled_marker, "")
    job_ids = bundle.read_json(bundle.jobs_file, [])
    SlurmClient(env=manifest.profile().remote.env).cancel(job_ids)
    closed = close_runs(manifest, bundle)
    return CancelAnswer(sweep_id=sweep_id, cancelled_jobs=job_ids, closed_runs=closed)


def close_runs(manifest: BundleManifest, bundle: Bundle) -> int:
    """The sweep's runs (trials and parent) still RUNNING are closed as KILLED (cancel, zombies); how many."""
    from orchestrator.tracking.client import TrackingClient
    from orchestrator.tracking.spool import RunSpool

    ledgers = [bundle.read_json(path, {}) for path in bundle.runs_files()]  # one, or one per shard
    keys = [key for ledger in ledgers for key in ledger.values()]
    # Nodes that cannot reach the server keep local keys (deferred-...): the run the deliverer created for each
    # (none yet: nothing to close). The parent first, so a trial the server cannot read never keeps it open.
    run_ids = [manifest.parent_run_id] if manifest.parent_run_id else []
    run_ids += [run_id for key in keys if (run_id := RunSpool(bundle.spool_dir, key).server_run_id())]
    return TrackingClient(manifest.tracking_uri).close_running(run_ids, RunStatus.KILLED)
