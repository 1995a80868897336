"""The job entry point: what runs inside a SLURM allocation for one sweep.

`SweepJob` is the callable submitit pickles. On the allocation it starts Ray across the
nodes, runs the sweep's Tune experiment (or restores it when a previous attempt left
one), records trials in MLflow under the sweep's parent run, and stops Ray by PID.
Its `checkpoint()` makes submitit requeue the job on preemption or time-out.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.bundle import Bundle, write_atomic


@dataclass
class SweepJob:
    bundle_root: str

    def __call__(self) -> dict[str, Any] | None:
        from cluster.ray_allocation import Allocation, run_ray_worker

        bundle, allocation = Bundle(Path(self.bundle_root)), Allocation.from_environment()
        if allocation.rank > 0:  # one task per node: the others join the head's Ray cluster
            run_ray_worker(allocation, bundle.rendezvous(allocation.key))
            return None
        return run_sweep_job(bundle, allocation)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on USR2 (preemption, time limit): requeue; Tune restores on restart."""
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(self.bundle_root))


def run_sweep_job(bundle: Bundle, allocation: Any) -> dict[str, Any]:
    import json

    import ray
    from ray import tune

    from cluster.experiment import ExperimentPlan, build_tuner
    from cluster.ray_allocation import ray_head, wait_for_nodes
    from cluster.trial_status import TrialStatusWriter
    from orchestrator.config.loading import load_sweep
    from orchestrator.tracking import layout
    from orchestrator.tracking.client import TrackingClient
    from orchestrator.tracking.tune_callback import MLflowTrialTracker
    from trainables.registry import get_trainable_spec

    manifest = bundle.manifest()
    if bundle.cancelled_marker.exists():
        return {"sweep_id": manifest.sweep_id, "status": "CANCELLED"}
    resolved = load_sweep(bundle.code / manifest.sweep_file)
    client = TrackingClient(manifest.tracking_uri)
    base_tags = {
        layout.TAG_SWEEP_ID: manifest.sweep_id, layout.TAG_SWEEP_NAME: manifest.sweep_name,
        layout.TAG_PROJECT: manifest.project, layout.TAG_TRAINABLE: resolved.project.trainable,
        layout.TAG_GIT_COMMIT: manifest.code.get("commit", "unknown"),
        layout.TAG_GIT_DIRTY: str(manifest.code.get("dirty", False)).lower(),
        layout.TAG_CLUSTER: manifest.cluster.get("name", ""), "orch.slurm_job_id": allocation.job_id,
    }
    tracker = MLflowTrialTracker(client, manifest.experiment_id or "", manifest.parent_run_id or "", base_tags,
                                 manifest.sweep_name, ledger_path=bundle.runs_file)
    status = TrialStatusWriter(bundle.trials_file, resolved.sweep.metric, allocation.job_id)
    per_trial_gpu = resolved.sweep.resources_per_trial.gpu
    total_gpus = allocation.gpus_per_node * allocation.nodes
    total_cpus = allocation.cpus_per_node * allocation.nodes
    fit = int(total_cpus // resolved.sweep.resources_per_trial.cpu)
    if per_trial_gpu > 0:
        fit = min(fit, int(total_gpus // per_trial_gpu))
    cap = resolved.sweep.max_concurrent_trials
    plan = ExperimentPlan(manifest.sweep_id, resolved, bundle.ray_results, max(1, min(cap, fit) if cap else fit))

    started = time.time()
    with ray_head(allocation, bundle.rendezvous(allocation.key)) as address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        try:
            wait_for_nodes(allocation.nodes)
            experiment = bundle.ray_results / manifest.sweep_id
            if tune.Tuner.can_restore(str(experiment)):
                # A previous attempt (preempted, timed out, requeued) left the experiment: resume it.
                # Its callbacks come back from the experiment state; the tracker reloads its run ledger.
                trainable = tune.with_resources(
                    get_trainable_spec(resolved.project.trainable).trainable_class(),
                    {"cpu": resolved.sweep.resources_per_trial.cpu, "gpu": per_trial_gpu},
                )
                tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
            else:
                tuner = build_tuner(plan, [tracker, status])
            grid = tuner.fit()
        finally:
            ray.shutdown()
    failed = sum(1 for result in grid if result.error)
    summary = {
        "sweep_id": manifest.sweep_id, "job_id": allocation.job_id, "host": socket.gethostname(),
        "nodes": allocation.nodes, "attempt": allocation.attempt, "trials": len(grid), "failed": failed, "seconds": round(time.time() - started, 1),
    }
    write_atomic(bundle.root / f"result-{allocation.job_id}.json", json.dumps(summary, indent=2))
    if manifest.parent_run_id:
        client.end_run(manifest.parent_run_id, "FAILED" if failed else "FINISHED")
    return summary


