"""Build and run the Ray Tune experiment of one sweep (the same code locally and on SLURM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config.loading import ResolvedSweep
from orchestrator.config.search_space import deep_merge


@dataclass(frozen=True)
class ExperimentPlan:
    sweep_id: str
    resolved: ResolvedSweep
    storage_path: Path
    max_concurrent_trials: int


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


def build_tuner(plan: ExperimentPlan, callbacks: list[Any]) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from trainables.registry import get_trainable_spec

    sweep = plan.resolved.sweep
    trainable = tune.with_resources(
        get_trainable_spec(plan.resolved.project.trainable).trainable_class(),
        {"cpu": sweep.resources_per_trial.cpu, "gpu": sweep.resources_per_trial.gpu},
    )
    return tune.Tuner(
        trainable,
        param_space=param_space(plan.resolved),
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode=sweep.mode,
            num_samples=sweep.num_samples,
            search_alg=BasicVariantGenerator(random_state=sweep.search.seed, max_concurrent=plan.max_concurrent_trials),
            scheduler=_scheduler(plan.resolved),
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=plan.sweep_id,
            storage_path=str(plan.storage_path),
            verbose=0,
            callbacks=callbacks,
            log_to_file=True,  # each trial's stdout/stderr in its folder, for `orch logs SWEEP TRIAL`
            sync_config=tune.SyncConfig(sync_artifacts=True),  # ...copied from the node to the experiment folder
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=sweep.checkpoint.every_epochs, checkpoint_at_end=True, num_to_keep=sweep.checkpoint.keep
            ),
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        ),
    )
