"""The job entry point: what runs inside a SLURM allocation for one sweep.

`SweepJob` is the callable submitit pickles. On the allocation it starts Ray across the
nodes, runs the sweep's Tune experiment (or restores it when a previous attempt left
one), records trials in MLflow under the sweep's parent run, and stops Ray by PID.
Its `checkpoint()` makes submitit requeue the job on preemption or time-out.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.kernel.files import write_atomic
from orchestrator.kernel.states import JobState, RunStatus
from orchestrator.kernel.sweep_folder import Bundle
from trainables import runtime

# The file (one per job and attempt, its path set by the batch script: cluster/slurm/job_spec.step_guard_lines)
# this job's Python touches as it starts: a step that failed without it requeues the job instead of failing.
STEP_STARTED_ENV = "ORCH_STEP_STARTED"
# The file this job's Python touches to have the batch script requeue the job (one per job and attempt).
REQUEUE_REQUEST_ENV = "ORCH_REQUEUE_REQUEST"


def mark_step_started() -> None:
    marker = os.environ.get(STEP_STARTED_ENV)
    if marker:
        try:
            Path(marker).touch()
        except OSError:  # the sweep folder unwritable: the job fails on its own soon, and says why
            pass


def requeue_through_the_batch_script() -> None:
    """In a container (remote.container: apptainer, pyxis) the image has no `scontrol`, so submitit's requeue after a
    USR2 fails (FileNotFoundError: the job ends FAILED, never requeued; tests/image found it). There the requeue is
    asked of the batch script instead, which runs outside the container: this Python touches the request file and
    exits as submitit does, and the script's teardown (cluster/slurm/job_spec.py) runs `scontrol requeue`."""
    import shutil

    marker = os.environ.get(REQUEUE_REQUEST_ENV)
    if not marker or shutil.which("scontrol") is not None:
        return
    from submitit.slurm.slurm import SlurmJobEnvironment

    def _requeue(self: SlurmJobEnvironment, countdown: int) -> None:
        Path(marker).touch()
        print(f"orch: no scontrol here (a container): the batch script requeues job {self.job_id}", flush=True)

    SlurmJobEnvironment._requeue = _requeue  # type: ignore[method-assign]


def ignore_late_signals(result: Any) -> Any:
    """The sweep's work is done (every trial ended, its runs closed): a USR2 from now on (a preemption or the time
    limit reaching a job that is exiting) is ignored. Its default action would kill the exiting Python, and the
    job would end FAILED with nothing left to do (the soak found it); submitit's handler would requeue it."""
    import signal

    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return result


@dataclass
class SweepJob:
    bundle_root: str
    shard: int | None = None  # layout array: the shard of shards.json this array task runs

    def __call__(self) -> dict[str, Any] | None:
        from cluster.node.ray_allocation import Allocation, run_ray_worker

        mark_step_started()
        requeue_through_the_batch_script()

        bundle, allocation = Bundle(Path(self.bundle_root)), Allocation.from_environment()
        if allocation.rank > 0:  # one task per node: the others join the head's Ray cluster
            run_ray_worker(allocation, bundle.rendezvous(allocation.key))
            return ignore_late_signals(None)
        return ignore_late_signals(run_sweep_job(bundle, allocation, self.shard))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on USR2 (preemption, time limit): requeue; Tune restores on restart."""
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(self.bundle_root, self.shard))


def run_sweep_job(bundle: Bundle, allocation: Any, shard: int | None = None) -> dict[str, Any]:
    """Run (or restore) the sweep's experiment, or with `shard` the experiment of that shard only."""
    import json

    from cluster.node.ray_allocation import starting_ray_head
    from orchestrator.kernel.config.workspace import conf_root_of, workspace_of

    manifest = bundle.manifest()
    if bundle.cancelled_marker.exists():
        return {"sweep_id": manifest.sweep_id, "status": JobState.CANCELLED.value}
    begin_attempt(bundle, allocation, manifest.sweep_id, shard)
    profile = manifest.profile()
    # tracking.nodes_reach_server: false -> the tracker never contacts MLflow; it spools next to the run ledger.
    nodes_reach_server = profile.tracking.nodes_reach_server
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # the experiment state follows new checkpoints closely
    # What the trials' processes read (trainables.runtime): the run ledger (run ids stamped into checkpoints, a
    # command's MLFLOW_RUN_ID), the workspace its modules import from and its commands run in, where the job asks
    # for a checkpoint (preemption.install), MLflow's store. Set before the Ray head starts: its worker processes
    # inherit its environment, not this process's.
    os.environ[runtime.RUN_LEDGER_ENV] = str(bundle.runs_file_of(shard))
    os.environ[runtime.WORKSPACE_ENV] = str(workspace_of(conf_root_of(bundle.code / manifest.sweep_file)))
    os.environ[runtime.CHECKPOINT_NOW_ENV] = str(bundle.checkpoint_now_file(shard))  # the job's "checkpoint now" file
    if nodes_reach_server:
        os.environ["MLFLOW_TRACKING_URI"] = manifest.tracking_uri
    started = time.time()
    # The head boots (~6 s on the test cluster) while this process imports Ray, loads the sweep and opens MLflow.
    with starting_ray_head(allocation, bundle.rendezvous(allocation.key)) as head:
        import ray
        from ray import tune

        from cluster.node.experiment import ExperimentPlan, build_tuner, trainable
        from cluster.node.ray_allocation import wait_for_nodes
        from cluster.node.shards import read_plan
        from cluster.node.trial_status import ShardTrials, TrialStatusWriter
        from orchestrator.kernel import tracking_layout as layout
        from orchestrator.kernel.config.loading import load_sweep
        from orchestrator.kernel.config.resources import MachineResources, max_concurrent
        from orchestrator.tracking.client import TrackingClient
        from orchestrator.tracking.tune_callback import MLflowTrialTracker

        resolved = load_sweep(bundle.code / manifest.sweep_file)
        client = TrackingClient(manifest.tracking_uri)
        identity = layout.SweepIdentity(
            manifest.sweep_id,
            manifest.sweep_name,
            manifest.project,
            resolved.project.runs,
            str(manifest.code.get("commit", "unknown")),
            bool(manifest.code.get("dirty", False)),
            profile.name,
        )
        # SLURM_JOB_ID of an array task is its own number: the task is also tagged as `orch status` lists it.
        base_tags = {**layout.sweep_tags(identity), **layout.slurm_tags(allocation.job_id, shard)}
        shard_plan = read_plan(bundle.shards_file) if shard is not None else None
        tracker = MLflowTrialTracker(
            client if nodes_reach_server else None,
            manifest.experiment_id or "",
            manifest.parent_run_id or "",
            base_tags,
            manifest.sweep_name,
            ledger_path=bundle.runs_file_of(shard),
        )
        status = TrialStatusWriter(bundle.trials_file_of(shard), resolved.sweep.metric, allocation.job_id)
        per_trial_gpu = resolved.sweep.resources_per_trial.gpu
        held = MachineResources(allocation.cpus_per_node * allocation.nodes, allocation.gpus_per_node * allocation.nodes)
        concurrency = max_concurrent(resolved.sweep, held, shards=len(shard_plan.shards) if shard_plan is not None else 1)
        plan = ExperimentPlan(
            manifest.sweep_id,
            resolved,
            bundle.ray_results,
            concurrency,
            shard_plan.shard(shard) if shard_plan is not None and shard is not None else None,
        )
        from cluster.node.preemption import SignalGate

        callbacks: list[Any] = [tracker, status] if shard is None else [ShardTrials([tracker, status])]
        callbacks.append(SignalGate())

        from cluster.node import preemption

        # USR2 (preemption, time limit): trials checkpoint first, then submitit requeues (see cluster/node/preemption.py).
        grace = min(float(profile.slurm.signal_lead_s if profile.slurm is not None else 60), 60.0)
        experiment = bundle.experiment_dir(manifest.sweep_id, shard)
        preemption.install(
            bundle.checkpoint_now_file(shard),
            experiment,
            deadline_s=max(5.0, min(grace, 30.0) - 5.0),
            on_handover=lambda reason: end_attempt(bundle, shard, reason),
        )
        ray.init(address=head.ready(), logging_level=logging.WARNING, log_to_driver=False)
        try:
            wait_for_nodes(allocation.nodes)
            if tune.Tuner.can_restore(str(experiment)):
                # A previous attempt (preempted, timed out, requeued) left the experiment: resume it.
                # Its callbacks come back from the experiment state; the tracker reloads its run ledger.
                tuner = tune.Tuner.restore(str(experiment), trainable(plan), resume_errored=True)
            else:
                tuner = build_tuner(plan, callbacks)
            grid = tuner.fit()
        finally:
            ray.shutdown()
    failed = grid.num_errors
    summary = {
        "sweep_id": manifest.sweep_id,
        "job_id": allocation.job_id,
        "host": socket.gethostname(),
        "nodes": allocation.nodes,
        "attempt": allocation.attempt,
        "trials": len(grid),
        "failed": failed,
        "seconds": round(time.time() - started, 1),
        **({"shard": shard} if shard is not None else {}),
    }
    write_atomic(bundle.result_file(allocation.job_id), json.dumps(summary, indent=2))
    parent_status: RunStatus | None = RunStatus.FAILED if failed else RunStatus.FINISHED
    if shard_plan is not None:  # the parent run ends with the last shard
        parent_status = _sweep_status(bundle, len(shard_plan.shards))
    _log_recovery_metrics(
        bundle, client if nodes_reach_server else None, manifest.parent_run_id, allocation, per_trial_gpu, shard
    )
    if manifest.parent_run_id and parent_status:
        tracker.end_parent(parent_status)  # deferred mode: recorded in the spool for delivery
    return summary


def begin_attempt(bundle: Bundle, allocation: Any, sweep_id: str, shard: int | None) -> str:
    """Start of one attempt of the job: its fencing token (attempt.json: older attempts stop writing),
    the attempts ledger, and a separator in the job log naming the attempt, the job, the node and
    why the previous attempt ended (as sacct reports it)."""
    import json
    import os
    import uuid

    token = f"{allocation.job_id}.{allocation.attempt}.{uuid.uuid4().hex[:8]}"
    os.environ[runtime.ATTEMPT_TOKEN_ENV] = token  # read by the tracker (also after Tuner.restore unpickles it)
    ledger = bundle.attempts_file(shard)
    history = bundle.read_json(ledger, [])
    previous = _previous_attempt_end(allocation, history)
    os.environ[runtime.ATTEMPT_INDEX_ENV] = str(len(history))  # attempts of the sweep across jobs (requeues and orch resume)
    entry = {
        "attempt": allocation.attempt,
        "job_id": allocation.job_id,
        "node": socket.gethostname(),
        "slurm_node": os.environ.get("SLURMD_NODENAME", ""),
        "started_at": time.time(),
        "token": token,
        "previous_ended": previous,
    }
    write_atomic(bundle.attempt_file(shard), json.dumps(entry))
    write_atomic(ledger, json.dumps([*history, entry], indent=1))
    print(
        f"===== sweep {sweep_id}{'' if shard is None else f' shard {shard}'}: attempt {allocation.attempt} "
        f"(SLURM job {allocation.job_id}, restart {allocation.attempt}) on {entry['slurm_node'] or entry['node']} "
        f"at {time.strftime('%Y-%m-%d %H:%M:%S')}; previous attempt: {previous or 'none'} =====",
        flush=True,
    )
    return token


def end_attempt(bundle: Bundle, shard: int | None, reason: str) -> None:
    """Record in the attempts ledger how this attempt ends (the next attempt's log separator names it)."""
    import json

    ledger = bundle.attempts_file(shard)
    history = bundle.read_json(ledger, [])
    if history:
        history[-1]["ended"] = reason
        write_atomic(ledger, json.dumps(history, indent=1))


def _previous_attempt_end(allocation: Any, history: list[dict[str, Any]] | None = None) -> str | None:
    """How the previous attempt of this job ended: what it recorded itself (a signal it handled), else
    SLURM's accounting (node failure, `scontrol requeue`, a kill without a word); None for the first."""
    if allocation.attempt == 0 or allocation.job_id == "local":
        return None
    if history and history[-1].get("job_id") == allocation.job_id and history[-1].get("ended"):
        return str(history[-1]["ended"])
    from cluster.adaptors.slurm import SlurmClient

    try:
        records = SlurmClient(env={}, timeout_s=20).attempts(allocation.job_id)
    except Exception as exc:  # accounting away: the separator says so, the job goes on
        return f"unknown ({exc})"
    ended = [r for r in records if r.state.is_ended or r.state == JobState.REQUEUED]
    if not ended:
        return "ended without a signal (node failure, scontrol requeue or a kill); accounting has no record of it here"
    last = ended[-1]
    return f"{last.state.value} on {last.node_list or '?'} after {last.elapsed}" + (
        f" ({last.reason})" if last.reason not in ("", "None") else ""
    )


def _log_recovery_metrics(
    bundle: Bundle, client: Any, parent_run_id: str | None, allocation: Any, gpus_per_trial: float, shard: int | None
) -> None:
    """Per sweep (or shard): attempts, steps re-done after restores and the GPU-hours they cost."""
    if not parent_run_id or client is None:
        return
    entries = bundle.read_json(bundle.recovery_file(shard), [])  # the trackers of every attempt wrote there
    steps = sum(int(e.get("redone_steps", 0)) for e in entries)
    redone_s = sum(float(e.get("redone_s", 0.0)) for e in entries)
    resume_s = sum(float(e.get("resume_s") or 0.0) for e in entries)
    gpus = max(gpus_per_trial, 0.0)
    count = len(bundle.read_json(bundle.attempts_file(shard), [])) or allocation.attempt + 1
    metrics = {
        "orch_attempts": float(count),
        "orch_redone_steps": float(steps),
        "gpu_hours_redone": redone_s * gpus / 3600.0,
        "gpu_hours_lost_to_preemption": (redone_s + resume_s) * gpus / 3600.0,
    }
    try:
        client.log_metrics(parent_run_id, metrics, step=shard or 0)
    except Exception:  # the sweep's result does not depend on these
        pass


def _sweep_status(bundle: Bundle, shards: int) -> RunStatus | None:
    """FINISHED/FAILED once every shard has written its result, else None (shards still running)."""
    results = [bundle.read_json(path, {}) for path in bundle.result_files()]
    done = {result["shard"]: result for result in results if "shard" in result}
    if len(done) < shards:
        return None
    return RunStatus.FAILED if any(result.get("failed") for result in done.values()) else RunStatus.FINISHED
