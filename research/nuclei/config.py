"""The project's typed config: every trial's hyperparameters, validated once at the edge (unknown keys are
refused with the valid ones listed). Distances and sizes are in pixels (``_px``-free names follow the paper:
``tile_size``, ``nms_radius``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nuclei.network import MIN_TILE

__all__ = ["NucleiConfig"]


class NucleiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    data: Literal["synthetic", "folder"] = "synthetic"
    data_root: str | None = Field(None, description="folder of PNG patches + annotations.csv (data: folder)")
    n_patches: int = Field(80, ge=3, description="synthetic patches generated")
    patch_size: int = Field(96, ge=32, le=1024, description="synthetic patch side, px")
    data_seed: int = Field(0, description="seed of the synthetic patches, the split and the background tiles")
    train_fraction: float = Field(0.6, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="the test split is the rest")
    background_per_patch: int = Field(12, ge=0, description="background tiles drawn per patch")
    background_distance: float = Field(10.0, ge=0.0, description="px from every annotated centre")
    # network
    tile_size: int = Field(20, ge=MIN_TILE, le=257, description=f"tile side, px (>= {MIN_TILE})")
    width: int = Field(16, ge=2, le=256, description="stem channels; each Inception branch has width // 2")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # training: Adam, triangular cyclical LR between lr * lr_min_factor and lr
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    eval_batch_size: int = Field(512, ge=1)
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    lr_min_factor: float = Field(0.1, gt=0.0, le=1.0, description="1: a constant LR")
    lr_cycle_epochs: float = Field(2.0, gt=0.0, description="epochs per LR cycle (up and down)")
    weight_decay: float = Field(0.0, ge=0.0)
    augment: bool = Field(True, description="90-degree rotations, flips and translations up to max_shift px")
    max_shift: int = Field(2, ge=0, le=8, description="px of random translation")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # evaluation
    nms_radius: float = Field(10.0, gt=0.0, description="disc NMS radius and matching distance, px (the paper: 10)")
    threshold: float = Field(0.5, ge=0.0, lt=1.0, description="cell probability a detection needs")
    detect_every: int = Field(0, ge=0, description="detection metrics every N epochs; 0: at the last epoch only")
    detect_patches: int | None = Field(None, ge=1, description="the first N test patches for detection (None: all)")
    eval_tiles: int | None = Field(None, ge=1, description="the first N val/test tiles for tile accuracy (None: all)")

    @model_validator(mode="after")
    def _consistent(self) -> NucleiConfig:
        if self.data == "folder" and not self.data_root:
            raise ValueError("data folder needs data_root (the folder holding annotations.csv and the PNGs)")
        if self.train_fraction + self.val_fraction >= 1.0:
            raise ValueError(f"train_fraction + val_fraction = {self.train_fraction + self.val_fraction} leaves no test patches")
        return self

    def detects_at(self, epoch: int) -> bool:
        return epoch >= self.epochs or (self.detect_every > 0 and epoch % self.detect_every == 0)
