"""Typed config of the AVAE trainable (pydantic only; importing it never imports torch)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from trainables.config import TrainableConfig

__all__ = ["AVAEConfig", "TrainMode"]

TrainMode = Literal["upright", "augmented", "train_opt"]


class AVAEConfig(TrainableConfig):
    """AVAE hyper-parameters; defaults are the small-scale spec of EXPERIMENTS.md 2.6.

    ``train_mode``: ``upright`` = plain VAE on upright digits; ``augmented`` = plain VAE
    on digits rotated by uniform random angles; ``train_opt`` = digits rotated by
    uniform random angles, rotation search inside every training step.
    """

    latent_dim: int = Field(6, gt=0, le=512)
    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, gt=0)
    train_mode: TrainMode = "train_opt"
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
    train_subset: Optional[int] = Field(
        None, ge=10, description="Stratified subset of the 1,437 training digits (None = all)."
    )
    test_subset: Optional[int] = Field(
        None, ge=10, description="Stratified subset of the 360 test digits (None = all)."
    )

    @field_validator("eval_rotations_deg")
    @classmethod
    def _rotations_in_range(cls, value: list[int]) -> list[int]:
        bad = [deg for deg in value if not 0 <= deg < 360]
        if bad:
            raise ValueError(f"rotations must be in [0, 360) degrees, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"rotations must be distinct, got {value}")
        return value
