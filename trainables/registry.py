"""The names the orchestrator knows trainables by, and where each one lives.

Importing this module imports neither torch nor ray: the config models and the
trainable classes are loaded lazily from their ``"module:attribute"`` paths.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pydantic
    import ray.tune

__all__ = [
    "TrainableSpec",
    "UnknownTrainableError",
    "available_trainables",
    "get_trainable_spec",
]


class UnknownTrainableError(KeyError):
    """Raised for a trainable name that is not registered; the message lists the valid ones."""

    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        self.valid = valid
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown trainable {self.name!r}; valid trainables: {', '.join(self.valid)}"


def _load(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class TrainableSpec:
    """One registered trainable.

    ``metrics`` lists every metric name reported on every epoch with the default
    config. ``metric_patterns`` are regular expressions for metric families whose
    names depend on the config (e.g. ``val_loss_rot<deg>`` for any rotation list);
    :meth:`reports_metric` accepts a name matching either.
    """

    name: str
    description: str
    config_module: str
    trainable_module: str
    metrics: tuple[str, ...]
    metric_patterns: tuple[str, ...] = ()

    def config_model(self) -> type[pydantic.BaseModel]:
        """The pydantic model that validates this trainable's config (torch-free import)."""
        return _load(self.config_module)

    def trainable_class(self) -> type[ray.tune.Trainable]:
        """The Ray Tune ``Trainable`` class (imports torch and ray)."""
        return _load(self.trainable_module)

    def reports_metric(self, metric: str) -> bool:
        """Whether ``metric`` is a name this trainable reports (exact name or family)."""
        if metric in self.metrics:
            return True
        return any(re.fullmatch(pattern, metric) for pattern in self.metric_patterns)


_AVAE_ROTATIONS_DEG = tuple(range(0, 181, 20))

_REGISTRY: dict[str, TrainableSpec] = {
    spec.name: spec
    for spec in (
        TrainableSpec(
            name="avae",
            description=(
                "Affine VAE on rotated scikit-learn digits (EXPERIMENTS.md 2.6): "
                "rotation search before the encoder, inverse rotation after the decoder."
            ),
            config_module="trainables.avae.config:AVAEConfig",
            trainable_module="trainables.avae.trainable:AVAETrainable",
            metrics=(
                "epoch",
                "train_loss",
                "lr",
                "val_loss",
                *(f"val_loss_rot{deg}" for deg in _AVAE_ROTATIONS_DEG),
                "orientation_r1",
                "orientation_r2",
                "val_loss_affine",
            ),
            metric_patterns=(r"val_loss_rot\d+",),
        ),
        TrainableSpec(
            name="avae3d",
            description=(
                "3D orientation AVAE on voxel grids (EXPERIMENTS.md 3): Conv3d VAE with "
                "cube-24 / free rotations and an exhaustive or restart orientation search."
            ),
            config_module="trainables.avae3d.config:AVAE3DConfig",
            trainable_module="trainables.avae3d.trainable:AVAE3DTrainable",
            metrics=(
                "epoch",
                "train_loss",
                "lr",
                "val_loss",
                "val_mse",
                "val_bce",
                "val_iou",
                "orientation_consistency",
            ),
        ),
        TrainableSpec(
            name="hvae",
            description=(
                "Hierarchical VAE on generated shape grids (EXPERIMENTS.md 7): tile VAE "
                "applied convolutionally + global VAE over the latent grid."
            ),
            config_module="trainables.hvae.config:HVAEConfig",
            trainable_module="trainables.hvae.trainable:HVAETrainable",
            metrics=(
                "epoch",
                "train_loss",
                "lr",
                "val_loss",
                "val_elbo",
                "val_kl_global",
                "val_kl_tile",
                "val_mse",
                "val_mse_global",
            ),
        ),
    )
}


def available_trainables() -> list[str]:
    """Registered trainable names, sorted."""
    return sorted(_REGISTRY)


def get_trainable_spec(name: str) -> TrainableSpec:
    """The spec registered under ``name``; :class:`UnknownTrainableError` otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTrainableError(name, available_trainables()) from None
