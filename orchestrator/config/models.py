"""Typed models of the YAML files under conf/: projects, sweeps, clusters.

Every model rejects unknown keys. Cross-file checks (does the project exist, does
the trainable accept these hyperparameters, can the cluster give these resources)
live in `orchestrator.config.loading`, which knows about files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(StrictModel):
    """A research project: which trainable it runs and its default hyperparameters."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    trainable: str
    experiment: str | None = Field(default=None, description="MLflow experiment name; defaults to the project name")
    defaults: dict[str, Any] = Field(default_factory=dict)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


class ResourcesConfig(StrictModel):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)


class SchedulerConfig(StrictModel):
    """Trial scheduler: `fifo` runs every trial to its end, `asha` stops poor trials early."""

    type: Literal["fifo", "asha"] = "fifo"
    grace_period_epochs: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1)


class SearchConfig(StrictModel):
    """Search algorithm: `random` samples (and expands grids); seed makes sampling repeatable."""

    algorithm: Literal["random"] = "random"
    seed: int | None = None


class CheckpointPolicy(StrictModel):
    every_epochs: int = Field(default=1, ge=1)
    keep: int = Field(default=2, ge=1)


class SweepConfig(StrictModel):
    """A sweep: a project, a search space, the metric to optimise and how to run trials."""

    name: str = Field(pattern=NAME_PATTERN)
    project: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    metric: str
    mode: Literal["min", "max"]
    num_samples: int = Field(default=1, ge=1, le=100_000)
    search_space: dict[str, Any]
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources_per_trial: ResourcesConfig = ResourcesConfig()
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    max_failures: int = Field(default=0, ge=0, description="retries of a failed trial from its last checkpoint")


class TrackingConfig(StrictModel):
    """Where MLflow records runs. Unset = the embedded default under .orch/."""

    uri: str | None = None
    artifact_location: str | None = None


class ClusterConfig(StrictModel):
    """Where trials run. `local`: Ray on this machine."""

    name: str = Field(pattern=NAME_PATTERN)
    backend: Literal["local"] = "local"
    description: str = ""
    cpus: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    gpus: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    tracking: TrackingConfig = TrackingConfig()


__all__ = [
    "CheckpointPolicy",
    "ClusterConfig",
    "ProjectConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearchConfig",
    "StrictModel",
    "SweepConfig",
    "TrackingConfig",
]
