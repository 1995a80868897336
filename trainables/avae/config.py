"""Typed config of the AVAE trainable (pydantic only; importing it never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from trainables.config import TrainableConfig

__all__ = ["AVAEConfig", "Dataset", "KLChoice", "LossChoice", "TrainMode", "Transform"]

TrainMode = Literal["upright", "augmented", "train_opt"]
Transform = Literal["rotation", "affine"]
LossChoice = Literal["bce", "mse_sum_faithful"]
KLChoice = Literal["log_var", "log_sigma_faithful"]
Dataset = Literal["digits", "mnist"]
Architecture = Literal["spec", "paper"]
# The canvas each dataset's images are padded to when the config names none: the spec's 24x24 for the 16x16
# upsampled digits, the paper's 40x40 for MNIST's 28x28 (EXPERIMENTS.md 2.1: rotations do not cut strokes).
DEFAULT_CANVAS: dict[str, int] = {"digits": 24, "mnist": 40}
_IMAGE_SIDE: dict[str, int] = {"digits": 24, "mnist": 28}


class AVAEConfig(TrainableConfig):
    """AVAE hyper-parameters; defaults are the small-scale spec of EXPERIMENTS.md 2.6.

    ``train_mode``: ``upright`` = plain VAE on upright digits; ``augmented`` = plain VAE
    on digits rotated by uniform random angles; ``train_opt`` = digits rotated by
    uniform random angles, rotation search inside every training step.

    ``transform``: what the inner search optimises: ``rotation`` (theta) or ``affine``
    (the four entries of a 2x2 matrix, no translation; random candidates with entries in
    U(-1.5, 1.5), inverse = matrix inverse). Training data are rotated digits either way.
    ``loss`` / ``kl``: the corrected loss (default) or the original code's quirks
    (EXPERIMENTS.md 2.4): ``mse_sum_faithful`` = MSE-sum against mean/std-normalised
    images, ``log_sigma_faithful`` = KL reading the log-variance head as log sigma.
    ``eval_affine``: also report ``val_loss_affine``, the mean per-image loss of the test
    digits under one random affine perturbation each (rotation +-180 deg, shear +-55 deg,
    scale 0.75-1.5), with the configured search (about 1/len(eval_rotations_deg) extra
    evaluation time).
    """

    dataset: Dataset = Field(
        "digits", description="digits: scikit-learn's 8x8 digits (bundled); mnist: the IDX files in data_root."
    )
    data_root: str | None = Field(
        None, description="MNIST folder with the four standard IDX files (.gz or not): a local path or s3://bucket/prefix."
    )
    cache_dir: str | None = Field(None, description="Where an s3:// data_root is mirrored; default ~/.cache/orch/avae.")
    canvas: int | None = Field(
        None, ge=8, le=256, description="Images are zero-padded to canvas x canvas (multiple of 4); default 24 digits, 40 MNIST."
    )
    architecture: Architecture = Field(
        "spec",
        description="spec: the small conv VAE of EXPERIMENTS.md 2.6; paper: the original's BatchNorm network (2.2), 40x40 only.",
    )
    latent_dim: int = Field(6, gt=0, le=512)
    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, gt=0)
    train_mode: TrainMode = "train_opt"
    transform: Transform = "rotation"
    loss: LossChoice = "bce"
    kl: KLChoice = "log_var"
    eval_affine: bool = True
    screen_precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Precision of the candidate ranking pass (bfloat16: ~1.5-2x faster on "
        "CPUs with AVX512-BF16; winner and identity re-scored in float32).",
    )
    test_time_opt: bool = Field(True, description="Rotation search at evaluation (else theta = 0).")
    n_candidates: int = Field(16, gt=0, le=360, description="Identity + evenly spaced angles.")
    train_opt_steps: int = Field(5, ge=0, description="Adam steps on theta in training.")
    test_opt_steps: int = Field(10, ge=0, description="Adam steps on theta at evaluation.")
    opt_lr: float = Field(0.05, gt=0, description="Adam learning rate of the inner theta search.")
    eval_rotations_deg: list[int] = Field(
        default_factory=lambda: list(range(0, 181, 20)),
        min_length=1,
        description="Test digits are evaluated rotated by each of these angles (degrees).",
    )
    train_subset: int | None = Field(
        None, ge=10, description="Stratified subset of the training images (1,437 digits, 60,000 MNIST; None = all)."
    )
    test_subset: int | None = Field(
        None, ge=10, description="Stratified subset of the test images (360 digits, 10,000 MNIST; None = all)."
    )

    @property
    def image_canvas(self) -> int:
        """The side of the padded images and of the model's input."""
        return self.canvas if self.canvas is not None else DEFAULT_CANVAS[self.dataset]

    @model_validator(mode="after")
    def _data_fits(self) -> AVAEConfig:
        if self.dataset == "mnist" and not self.data_root:
            raise ValueError("dataset mnist needs data_root: a folder (or s3://bucket/prefix) with the MNIST IDX files")
        if self.dataset == "digits" and self.data_root:
            raise ValueError("data_root is read only with dataset: mnist (digits are bundled with scikit-learn)")
        canvas = self.image_canvas
        if self.architecture == "paper" and canvas != 40:
            raise ValueError(f"architecture paper takes 40x40 images (the paper's padding); set canvas: 40, got {canvas}")
        if canvas % 4:
            raise ValueError(f"canvas must be a multiple of 4 (two stride-2 convolutions), got {canvas}")
        if canvas < _IMAGE_SIDE[self.dataset]:
            raise ValueError(f"canvas {canvas} is smaller than the {self.dataset} images ({_IMAGE_SIDE[self.dataset]} px)")
        return self

    @field_validator("eval_rotations_deg")
    @classmethod
    def _rotations_in_range(cls, value: list[int]) -> list[int]:
        bad = [deg for deg in value if not 0 <= deg < 360]
        if bad:
            raise ValueError(f"rotations must be in [0, 360) degrees, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"rotations must be distinct, got {value}")
        return value
