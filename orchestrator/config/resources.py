"""Check a sweep's per-trial resources against what a cluster profile can give."""

from __future__ import annotations

from pathlib import Path

from cluster.local import MachineResources
from orchestrator.config.loading import ResolvedSweep
from orchestrator.errors import ResourceError


def check_resources(resolved: ResolvedSweep, resources: MachineResources, cluster_name: str) -> None:
    asked = resolved.sweep.resources_per_trial
    file: Path = resolved.file
    if asked.cpu > resources.cpus:
        raise ResourceError(
            file, "resources_per_trial.cpu",
            f"a trial asks for {asked.cpu:g} CPUs but cluster '{cluster_name}' has {resources.cpus}",
            f"ask for at most {resources.cpus}",
        )
    if asked.gpu > resources.gpus:
        raise ResourceError(
            file, "resources_per_trial.gpu",
            f"a trial asks for {asked.gpu:g} GPUs but cluster '{cluster_name}' has {resources.gpus}",
            "set gpu: 0 to run on CPUs here, or submit to a cluster with GPUs",
        )


def max_concurrent(resolved: ResolvedSweep, resources: MachineResources) -> int:
    """How many trials run at once: the sweep's cap, else as many as fit on the cluster."""
    asked = resolved.sweep.resources_per_trial
    fit = int(resources.cpus // asked.cpu)
    if asked.gpu > 0:
        fit = min(fit, int(resources.gpus // asked.gpu))
    fit = max(fit, 1)
    cap = resolved.sweep.max_concurrent_trials
    return min(cap, fit) if cap else fit
