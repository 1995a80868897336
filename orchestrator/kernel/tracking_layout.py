"""The MLflow run layout every UI comparison relies on. One module owns it.

- one MLflow experiment per research project (named after the project);
- one parent run per sweep, tagged `orch.kind=sweep`;
- one nested child run per trial (`mlflow.parentRunId`), tagged `orch.kind=trial`,
  with every hyperparameter as a param (dotted keys for nested ones), per-epoch
  metrics with the epoch as step, and artifacts under `pictures/` and `checkpoint/`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

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
TAG_PARENT = "mlflow.parentRunId"
TAG_SOURCE_COMMIT = "mlflow.source.git.commit"

KIND_SWEEP = "sweep"
KIND_TRIAL = "trial"

ARTIFACT_PICTURES = "pictures"
ARTIFACT_CHECKPOINT = "checkpoint"
ARTIFACT_SWEEP_CONFIG = "sweep"

# What Ray Tune adds to every result; not research metrics.
_RAY_RESULT_KEYS = frozenset(
    {
        "done", "training_iteration", "trial_id", "experiment_id", "date", "timestamp", "pid",
        "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
        "timesteps_since_restore", "time_total_s", "time_this_iter_s", "checkpoint_dir_name",
        "experiment_tag", "should_checkpoint", "timesteps_total", "episodes_total",
    }
)
MAX_PARAM_LENGTH = 6000


def parent_run_name(sweep_id: str) -> str:
    return sweep_id


def trial_run_name(sweep_name: str, trial_id: str) -> str:
    return f"{sweep_name}/{trial_id}"


def trial_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Every hyperparameter of a trial, nested keys dotted, as MLflow param strings."""
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in sorted(flatten(dict(config)).items())}


def placement_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """Where a trial's attempt runs, from what Ray and the trainable put in its results."""
    fields = {TAG_NODE: "hostname", TAG_NODE_IP: "node_ip", TAG_DEVICE: "device", TAG_CUDA_VISIBLE_DEVICES: "cuda_visible_devices"}
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
