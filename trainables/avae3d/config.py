"""Typed config of the 3D AVAE trainable (pydantic only; importing it never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainables.config import TrainableConfig

__all__ = ["AVAE3DConfig", "Augmentation", "Optimisation"]

Augmentation = Literal["none", "cube24", "free"]
Optimisation = Literal["none", "exhaustive24", "restarts"]


class AVAE3DConfig(TrainableConfig):
    """3D AVAE hyper-parameters; defaults: the small spec of EXPERIMENTS.md 3.3 at 16^3.

    ``augmentation`` of the training objects: ``none`` (canonical orientation),
    ``cube24`` (one of the 24 cube rotations), ``free`` (rotation + optional translation).
    ``optimisation`` before every step: ``none``, ``exhaustive24`` (all 24 rotations of
    all samples in one batched pass, keep the best), ``restarts`` (24 cube rotations +
    random rotations, Adam on the best ``n_keep``). Faithful-to-the-original options:
    ``posterior="deterministic"`` (z = mu, as his runs did), ``search_loss="bce"`` (his
    search ignored the KL term), ``rotation_sampling="euler"``.
    """

    # data
    dataset: Literal["synthetic", "modelnet10", "modelnet40"] = "synthetic"
    data_root: str | None = Field(None, description="ModelNet root: local path or s3://bucket/prefix (fetched and cached).")
    cache_dir: str | None = Field(None, description="Voxel (and S3) cache; default ~/.cache/orch/avae3d.")
    classes: list[str] | None = Field(None, description="Class names (default: all).")
    n_classes: int | None = Field(None, gt=0, description="Use only the first n classes.")
    resolution: int = Field(16, ge=4, le=128, description="Voxelisation resolution R.")
    grid_size: int = Field(16, ge=8, le=128, description="Model input: R^3 zero-padded to this.")
    fill: bool = Field(True, description="Solid objects (fill the voxelised surface).")
    synthetic_train_per_class: int = Field(48, gt=0)
    synthetic_test_per_class: int = Field(16, gt=0)
    data_seed: int = Field(0, ge=0, description="Seed of the synthetic shapes (fixed data).")
    train_subset: int | None = Field(None, gt=0, description="First N training objects.")
    test_subset: int | None = Field(None, gt=0, description="First N test objects.")
    # model and loss
    latent_dim: int = Field(8, gt=0, le=512)
    posterior: Literal["unit_sigma", "learned", "deterministic"] = Field(
        "unit_sigma", description="q(z|x) = N(mu, I) (spec), N(mu, sigma^2), or z = mu (his runs)."
    )
    recon_loss: Literal["bce", "weighted_bce"] = "bce"
    bce_gamma: float = Field(0.97, gt=0, lt=1, description="Brock et al.'s weight of occupied voxels.")
    search_loss: Literal["elbo", "bce"] = Field(
        "elbo", description="Per-candidate loss of the search: recon + KL, or recon only (his)."
    )
    # training
    lr: float = Field(3e-3, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, gt=0)
    lr_step_fraction: float = Field(1 / 3, gt=0, le=1, description="StepLR every fraction of epochs.")
    lr_gamma: float = Field(0.2, gt=0, le=1)
    amp: Literal["off", "bf16"] = Field("off", description="bf16 autocast of the model on CUDA.")
    # augmentation and search
    augmentation: Augmentation = "cube24"
    max_translation: float = Field(0.0, ge=0, le=0.5, description="free: t ~ U(-m, m)^3 (grid = 2).")
    rotation_sampling: Literal["quaternion", "euler"] = "quaternion"
    optimisation: Optimisation = "exhaustive24"
    n_restarts: int = Field(32, ge=0, description="restarts: random rotations besides the 24.")
    n_keep: int = Field(8, gt=0, description="restarts: best candidates refined by Adam.")
    opt_steps: int = Field(20, ge=0)
    opt_lr: float = Field(0.03, gt=0)
    # evaluation
    eval_augmentation: Literal["same", "none", "cube24", "free"] = Field(
        "same", description="Presentation of the test objects (same = as in training)."
    )
    test_opt: Literal["same", "none", "exhaustive24", "restarts"] = Field(
        "same", description="Search at evaluation (same = as in training)."
    )

    @model_validator(mode="after")
    def _check(self) -> AVAE3DConfig:
        if self.grid_size < self.resolution or self.grid_size % 8:
            raise ValueError("grid_size must be a multiple of 8 and >= resolution")
        if (self.grid_size - self.resolution) % 2:
            raise ValueError("grid_size - resolution must be even (symmetric padding)")
        if self.dataset != "synthetic" and not self.data_root:
            raise ValueError(f"dataset {self.dataset!r} needs data_root")
        return self

    def eval_presentation(self) -> str:
        return self.augmentation if self.eval_augmentation == "same" else self.eval_augmentation

    def eval_search(self) -> str:
        return self.optimisation if self.test_opt == "same" else self.test_opt
