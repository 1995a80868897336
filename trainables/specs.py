"""The built-in research projects' trainables, registered like any installed package's: through the
`orch.trainables` entry-point group (pyproject.toml names these objects). Importing this module stays
instant: the config models and trainable classes load lazily from their "module:attribute" paths."""

from __future__ import annotations

from trainables.registry import TrainableSpec

_AVAE_ROTATIONS_DEG = tuple(range(0, 181, 20))

AVAE = TrainableSpec(
    name="avae",
    description=(
        "Affine VAE on rotated scikit-learn digits (EXPERIMENTS.md 2.6): "
        "rotation search before the encoder, inverse rotation after the decoder."
    ),
    kind="class",
    config_module="trainables.avae.config:AVAEConfig",
    trainable_module="trainables.avae.trainable:AVAETrainable",
    metrics=(
        "epoch",
        "train_loss",
        "lr",
        "val_loss",
        "val_loss_no_search",
        *(f"val_loss_rot{deg}" for deg in _AVAE_ROTATIONS_DEG),
        "orientation_r1",
        "orientation_r2",
        "val_loss_affine",
    ),
    metric_patterns=(r"val_loss_rot\d+",),
)

AVAE3D = TrainableSpec(
    name="avae3d",
    description=(
        "3D orientation AVAE on voxel grids (EXPERIMENTS.md 3): Conv3d VAE with "
        "cube-24 / free rotations and an exhaustive or restart orientation search."
    ),
    kind="class",
    config_module="trainables.avae3d.config:AVAE3DConfig",
    trainable_module="trainables.avae3d.trainable:AVAE3DTrainable",
    metrics=("epoch", "train_loss", "lr", "val_loss", "val_mse", "val_bce", "val_iou", "orientation_consistency"),
)

HVAE = TrainableSpec(
    name="hvae",
    description=(
        "Hierarchical VAE on generated shape grids (EXPERIMENTS.md 7): tile VAE "
        "applied convolutionally + global VAE over the latent grid."
    ),
    kind="class",
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
)
