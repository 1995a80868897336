"""A sweep's parent MLflow run: opened the same way wherever the sweep runs (this machine, or the
login node before any SLURM job exists), with the layout's tag and param sets and the sweep's
configuration and code version as artifacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from orchestrator.kernel import tracking_layout as layout
from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.tracking_layout import SweepIdentity
from orchestrator.tracking.client import TrackingClient


def open_sweep_run(
    client: TrackingClient,
    resolved: ResolvedSweep,
    identity: SweepIdentity,
    max_concurrent_trials: int,
    *,
    shards: int | None = None,
    diff: str = "",
    untracked: Sequence[str] = (),
    reuse: bool = False,
    container_tags: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """The sweep's parent run and its experiment: (run id, experiment id). With `reuse`, a parent run of the
    same sweep id that exists already (a submit repeated after a crash) is the one returned. `container_tags`:
    the image the jobs run in (`tracking_layout.container_tags`)."""
    experiment_id = client.ensure_experiment(resolved.project.experiment_name)
    if reuse:
        existing = client.search_runs(
            [experiment_id], {layout.TAG_SWEEP_ID: identity.sweep_id, layout.TAG_KIND: layout.KIND_SWEEP}, max_results=1
        )
        if existing:
            return existing[0].run_id, experiment_id
    params = layout.sweep_params(resolved.sweep, resolved.num_trials, max_concurrent_trials, shards)
    tags = {**layout.parent_tags(identity), **(container_tags or {})}
    run_id = client.start_run(experiment_id, layout.parent_run_name(identity.sweep_id), tags, params)
    folder = layout.ARTIFACT_SWEEP_CONFIG
    client.log_text(run_id, Path(resolved.file).read_text(encoding="utf-8"), f"{folder}/sweep.yaml")
    client.log_text(run_id, Path(resolved.project_file).read_text(encoding="utf-8"), f"{folder}/project.yaml")
    config = {"sweep": resolved.sweep.model_dump(mode="json"), "project": resolved.project.model_dump(mode="json")}
    client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), f"{folder}/resolved.yaml")
    client.log_text(
        run_id,
        f"commit: {identity.commit}\ndirty: {str(identity.dirty).lower()}\n"
        + "".join(f"untracked: {name}\n" for name in untracked),
        "code/version.txt",
    )
    if identity.dirty:
        client.log_text(run_id, diff or "(untracked files only)\n" + "\n".join(untracked), "code/uncommitted.diff")
    return run_id, experiment_id
