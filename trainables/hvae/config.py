"""Typed config of the HVAE trainable (pydantic only; importing it never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainables.config import TrainableConfig

__all__ = ["HVAEConfig", "HVAELoss"]

HVAELoss = Literal["elbo", "original"]


class HVAEConfig(TrainableConfig):
    """HVAE hyper-parameters. Defaults: a CPU-sized version of his setup (EXPERIMENTS.md 7).

    ``loss``: ``elbo`` = hierarchical ELBO (Bernoulli pixels, q(z_tile|x) q(z_global|z_tile),
    p(z_global) p(z_tile|z_global)); ``original`` = his ``make_hvae_enc_dec_loss``: MSE-sum +
    kl_global_weight·KL(global) + kl_tile_weight·[KL(tile encoder) + KL(tile decoder)], both
    tile terms against N(0, I), KLs with his log-sigma quirk, tiles decoded from the
    global decoder's sample.
    """

    loss: HVAELoss = "elbo"
    kl_global_weight: float = Field(0.25, ge=0, description="w1 of the original loss (his 0.25).")
    kl_tile_weight: float = Field(0.05, ge=0, description="w2 of the original loss (his 0.05).")
    tile_size: int = Field(16, ge=8, description="Tile side in pixels (his 32); multiple of 4.")
    grid_size: int = Field(4, ge=1, le=16, description="Tiles per image side (his 8).")
    tile_latent_dim: int = Field(8, gt=0, le=256, description="Latent channels per tile (his 32).")
    global_latent_dim: int = Field(16, gt=0, le=512, description="Global latent size (his 32).")
    hidden: int = Field(128, ge=8, le=2048, description="Width of the FC layers.")
    structured: bool = Field(True, description="Tile type/variation fixed by row (his struc grids).")
    rand_fill: bool = False
    rand_outline: bool = False
    n_train: int = Field(512, ge=8, description="Generated training grid images (his 60k).")
    n_val: int = Field(128, ge=8, description="Generated validation grid images (his 10k).")
    data_seed: int = Field(0, ge=0, description="Seed of the shapes generator (fixed across trials).")
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0, lt=1, description="Adam learning rate (his 0.01).")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay (his 5e-4).")
    lr_step_fraction: float = Field(1 / 6, gt=0, le=1, description="StepLR every this fraction of the epochs (his 25/150).")
    lr_gamma: float = Field(0.2, gt=0, le=1, description="StepLR factor (his 0.2).")

    @model_validator(mode="after")
    def _tile_divisible(self) -> HVAEConfig:
        if self.tile_size % 4:
            raise ValueError(f"tile_size must be a multiple of 4, got {self.tile_size}")
        return self
