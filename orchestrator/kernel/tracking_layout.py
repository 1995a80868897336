"""The MLflow run layout every UI comparison relies on. One module owns it: names, tag sets, param sets.

- one MLflow experiment per research project (named after the project);
- one parent run per sweep, tagged `orch.kind=sweep`, with `sweep_tags` + `sweep_params`, wherever
  the sweep runs (this machine or SLURM);
- one nested child run per trial (`mlflow.parentRunId`), tagged `orch.kind=trial`, carrying the same
  `sweep_tags`, with every hyperparameter as a param (dotted keys for nested ones), per-epoch
  metrics with the epoch as step, and artifacts under `pictures/` and `checkpoint/`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.kernel.config.models import SweepConfig
from orchestrator.kernel.config.search_space import flatten

TAG_KIND = "orch.kind"
TAG_SWEEP_ID = "orch.sweep_id"
TAG_SWEEP_NAME = "orch.sweep_name"
TAG_PROJECT = "orch.project"
TAG_TRIAL_ID = "orch.trial_id"
TAG_TRAINABLE = "orch.trainable"
TAG_GIT_COMMIT = "orch.git_commit"
TAG_GIT_DIRTY = "orch.git_dirty"
TAG_CLUSTER = "orch.cluster"
TAG_HOST = "orch.host"
TAG_SLURM_JOB_ID = "orch.slurm_job_id"
TAG_GPU_TYPE = "orch.gpu_type"
TAG_ATTEMPT = "orch.attempt"
TAG_NODE = "orch.node"
TAG_NODE_IP = "orch.node_ip"
TAG_DEVICE = "orch.device"
TAG_CUDA_VISIBLE_DEVICES = "orch.cuda_visible_devices"
TAG_SHARD = "orch.shard"
TAG_SLURM_ARRAY_TASK = "orch.slurm_array_task"
TAG_RESUMED = "orch.resumed"
TAG_CHECKPOINT_FALLBACK = "orch.checkpoint_fallback"  # the corrupt checkpoint a resumed trial fell back from
TAG_ERROR = "orch.error"
TAG_BEST_TRIAL = "orch.best_trial_id"
TAG_BEST_RUN = "orch.best_run_id"
TAG_PARENT = "mlflow.parentRunId"
TAG_SOURCE_COMMIT = "mlflow.source.git.commit"
# The image a SLURM sweep's jobs run in (remote.container), on its parent run; the digest is the sha256 of the
# image FILE (a .sif or .sqsh the login node reads), not a registry's manifest digest.
TAG_CONTAINER_RUNTIME = "orch.container.runtime"
TAG_CONTAINER_IMAGE = "orch.container.image"
TAG_CONTAINER_IMAGE_FILE_SHA256 = "orch.container.image_file_sha256"

KIND_SWEEP = "sweep"
KIND_TRIAL = "trial"

ARTIFACT_PICTURES = "pictures"
ARTIFACT_CHECKPOINT = "checkpoint"
ARTIFACT_SWEEP_CONFIG = "sweep"

# What Ray Tune adds to every result; not research metrics.
_RAY_RESULT_KEYS = frozenset(
    {
        "done",
        "training_iteration",
        "trial_id",
        "experiment_id",
        "date",
        "timestamp",
        "pid",
        "hostname",
        "node_ip",
        "config",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_since_restore",
        "time_total_s",
        "time_this_iter_s",
        "checkpoint_dir_name",
        "experiment_tag",
        "should_checkpoint",
        "timesteps_total",
        "episodes_total",
    }
)
MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class SweepIdentity:
    """What every run of a sweep says about it: which sweep, project, trainable, code and cluster."""

    sweep_id: str
    sweep_name: str
    project: str
    trainable: str
    commit: str
    dirty: bool
    cluster: str


def sweep_tags(identity: SweepIdentity) -> dict[str, str]:
    """The tags the sweep's parent run AND each of its trial runs carry."""
    return {
        TAG_SWEEP_ID: identity.sweep_id,
        TAG_SWEEP_NAME: identity.sweep_name,
        TAG_PROJECT: identity.project,
        TAG_TRAINABLE: identity.trainable,
        TAG_GIT_COMMIT: identity.commit,
        TAG_GIT_DIRTY: str(identity.dirty).lower(),
        TAG_SOURCE_COMMIT: identity.commit,
        TAG_CLUSTER: identity.cluster,
    }


def parent_tags(identity: SweepIdentity) -> dict[str, str]:
    return {**sweep_tags(identity), TAG_KIND: KIND_SWEEP}


def container_tags(runtime: str, image: str, image_file_sha256: str | None = None) -> dict[str, str]:
    """The tags of a parent run whose jobs run in a container image."""
    tags = {TAG_CONTAINER_RUNTIME: runtime, TAG_CONTAINER_IMAGE: image}
    if image_file_sha256 is not None:
        tags[TAG_CONTAINER_IMAGE_FILE_SHA256] = image_file_sha256
    return tags


def sweep_params(sweep: SweepConfig, num_trials: int, max_concurrent_trials: int, shards: int | None = None) -> dict[str, str]:
    """The params of a sweep's parent run: what it optimises and how its trials run."""
    params = {
        "metric": sweep.metric,
        "mode": sweep.mode,
        "num_samples": str(sweep.num_samples),
        "num_trials": str(num_trials),
        "scheduler": sweep.scheduler.type,
        "search_algorithm": sweep.search.algorithm,
        "max_concurrent_trials": str(max_concurrent_trials),
    }
    if shards is not None:
        params.update({"slurm_layout": "array", "slurm_shards": str(shards)})
    return params


def slurm_tags(job_id: str, shard: int | None = None) -> dict[str, str]:
    """The trial runs' tags of a SLURM job (array task `job_id` of shard `shard`, as `orch status` lists it)."""
    tags = {TAG_SLURM_JOB_ID: job_id}
    if shard is not None:
        tags.update({TAG_SHARD: str(shard), TAG_SLURM_ARRAY_TASK: job_id})
    return tags


def parent_run_name(sweep_id: str) -> str:
    return sweep_id


def trial_run_name(sweep_name: str, trial_id: str) -> str:
    return f"{sweep_name}/{trial_id}"


def trial_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Every hyperparameter of a trial, nested keys dotted, as MLflow param strings."""
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in sorted(flatten(dict(config)).items())}


def placement_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """Where a trial's attempt runs, from what Ray and the trainable put in its results."""
    fields = {
        TAG_NODE: "hostname",
        TAG_NODE_IP: "node_ip",
        TAG_DEVICE: "device",
        TAG_CUDA_VISIBLE_DEVICES: "cuda_visible_devices",
    }
    return {tag: str(result[key]) for tag, key in fields.items() if result.get(key) not in (None, "")}


def result_step(result: Mapping[str, Any]) -> int:
    """The step a result is logged at: the trainable's epoch, else Tune's iteration."""
    return int(result.get("epoch", result.get("training_iteration", 0)))


def result_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The research metrics of one Tune result: finite numbers the trainable reported."""
    metrics = {}
    for key, value in result.items():
        if key in _RAY_RESULT_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            metrics[key] = float(value)
    if "time_this_iter_s" in result:
        metrics["epoch_time_s"] = float(result["time_this_iter_s"])
    return metrics
