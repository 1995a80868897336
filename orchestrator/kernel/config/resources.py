"""Resources and concurrency: what a place to run has, whether a sweep's trials fit, and how many
run at once. The one owner of the concurrency formula (local runs and SLURM jobs both use it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.config.models import SweepConfig
from orchestrator.kernel.errors import ResourceError


@dataclass(frozen=True)
class MachineResources:
    """CPUs and GPUs of a place trials run: this machine, or a SLURM job's allocation (all nodes)."""

    cpus: int
    gpus: int


def check_resources(resolved: ResolvedSweep, resources: MachineResources, cluster_name: str) -> None:
    asked = resolved.sweep.resources_per_trial
    file: Path = resolved.file
    if asked.cpu > resources.cpus:
        raise ResourceError(
            file,
            "resources_per_trial.cpu",
            f"a trial asks for {asked.cpu:g} CPUs but cluster '{cluster_name}' has {resources.cpus}",
            f"ask for at most {resources.cpus}",
        )
    if asked.gpu > resources.gpus:
        raise ResourceError(
            file,
            "resources_per_trial.gpu",
            f"a trial asks for {asked.gpu:g} GPUs but cluster '{cluster_name}' has {resources.gpus}",
            "set gpu: 0 to run on CPUs here, or submit to a cluster with GPUs",
        )


def max_concurrent(sweep: SweepConfig, resources: MachineResources, shards: int = 1) -> int:
    """How many trials run at once: as many as fit in `resources`, capped by the sweep's
    `max_concurrent_trials`; with `shards` array tasks the cap holds for all of them together."""
    asked = sweep.resources_per_trial
    fit = int(resources.cpus // asked.cpu)
    if asked.gpu > 0:
        fit = min(fit, int(resources.gpus // asked.gpu))
    cap = sweep.max_concurrent_trials
    if cap and shards > 1:
        cap = -(-cap // shards)
    return max(1, min(cap, fit) if cap else fit)
