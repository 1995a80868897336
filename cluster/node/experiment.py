"""Build and run the Ray Tune experiment of one sweep (the same code locally and on SLURM).

With a `shard` (SLURM `layout: array`) the experiment runs exactly that shard's
materialised trials (cluster.node.shards), under its own name `<sweep_id>-s<i>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.node import shards
from cluster.node.preemption import checkpointing_on_request
from cluster.node.shards import Shard
from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.config.search_space import deep_merge


@dataclass(frozen=True)
class ExperimentPlan:
    sweep_id: str
    resolved: ResolvedSweep
    storage_path: Path
    max_concurrent_trials: int
    shard: Shard | None = None

    @property
    def name(self) -> str:
        """The experiment's folder under `storage_path` (what a requeued job restores)."""
        return self.sweep_id if self.shard is None else f"{self.sweep_id}-s{self.shard.index}"


def param_space(resolved: ResolvedSweep) -> dict[str, Any]:
    return deep_merge(resolved.project.defaults, resolved.space.to_tune())


def _scheduler(resolved: ResolvedSweep) -> Any:
    policy = resolved.sweep.scheduler
    if policy.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="training_iteration", grace_period=policy.grace_period_epochs, reduction_factor=policy.reduction_factor
        )
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def trainable(plan: ExperimentPlan) -> Any:
    """The trainable (any form: class, function, command) with its per-trial resources: what `build_tuner`
    runs and `Tuner.restore` needs again. A class checkpoints when the job asks (SLURM's signal)."""
    from ray import tune

    resources = plan.resolved.sweep.resources_per_trial
    runs = plan.resolved.spec.trainable()
    if isinstance(runs, type):
        runs = checkpointing_on_request(runs)
    if plan.shard is not None:
        runs = shards.unwrapping_trainable(runs)
    return tune.with_resources(runs, {"cpu": resources.cpu, "gpu": resources.gpu})


def reuses_actors(plan: ExperimentPlan) -> bool:
    """Tune keeps a trial's worker process for the next trial (no new process, no re-import) when the trainable
    is a class that can reset itself: it overrides `reset_config` (the research trainables do). A function or
    command trainable is never reused: Ray's reset of one stopped mid-step fails the next trial."""
    from ray import tune

    runs = plan.resolved.spec.trainable()
    return isinstance(runs, type) and getattr(runs, "reset_config", None) is not tune.Trainable.reset_config


def _checkpoint_config(plan: ExperimentPlan) -> Any:
    """A class is checkpointed by Tune every `checkpoint.every_epochs` and at its end; a function or a command
    checkpoints when it reports one (Tune keeps the newest `checkpoint.keep` either way)."""
    from ray import tune

    policy = plan.resolved.sweep.checkpoint
    if plan.resolved.spec.kind == "class":
        return tune.CheckpointConfig(checkpoint_frequency=policy.every_epochs, checkpoint_at_end=True, num_to_keep=policy.keep)
    return tune.CheckpointConfig(num_to_keep=policy.keep)


def _shard_dirname(trial: Any) -> str:
    return shards.trial_id_of(trial.config)


def build_tuner(plan: ExperimentPlan, callbacks: list[Any]) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    sweep = plan.resolved.sweep
    sharded = plan.shard is not None
    return tune.Tuner(
        trainable(plan),
        param_space=shards.param_space(plan.shard) if plan.shard is not None else param_space(plan.resolved),
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode=sweep.mode,
            num_samples=1 if sharded else sweep.num_samples,  # a shard's trials are already sampled
            search_alg=BasicVariantGenerator(random_state=sweep.search.seed, max_concurrent=plan.max_concurrent_trials),
            scheduler=_scheduler(plan.resolved),
            reuse_actors=reuses_actors(plan),
            # trial folders are named by trial id (stable ids for shards), for `orch logs SWEEP TRIAL`
            trial_dirname_creator=_shard_dirname if sharded else (lambda trial: trial.trial_id),
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=str(plan.storage_path),
            verbose=0,
            callbacks=callbacks,
            log_to_file=True,  # each trial's stdout/stderr in its folder, for `orch logs SWEEP TRIAL`
            sync_config=tune.SyncConfig(sync_artifacts=True),  # ...copied from the node to the experiment folder
            checkpoint_config=_checkpoint_config(plan),
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        ),
    )


def restorable(experiment: Path) -> bool:
    """Did a run of this experiment leave state that `Tuner.restore` can continue?"""
    from ray import tune

    return tune.Tuner.can_restore(str(experiment))


def restore_tuner(plan: ExperimentPlan, experiment: Path) -> Any:
    """The experiment as its last run left it: finished trials stay finished, the unfinished and the failed
    continue from their last checkpoints. Its callbacks come back from the experiment state."""
    from ray import tune

    return tune.Tuner.restore(str(experiment), trainable(plan), resume_unfinished=True, resume_errored=True)


def callbacks_of(tuner: Any) -> list[Any]:
    """The callbacks a tuner runs with; for a restored tuner, the ones unpickled from its experiment state.
    Ray's Tuner has no public accessor for them: this reads its local TunerInternal (Ray 2.x)."""
    return list(tuner._local_tuner.get_run_config().callbacks or [])
