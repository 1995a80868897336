"""Fields every trainable config shares (pydantic only: importing this stays torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainableConfig"]


class TrainableConfig(BaseModel):
    """Base of every trainable's typed config; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(40, gt=0, description="Epochs to train; step() reports done=True at the last.")
    seed: int = Field(0, ge=0, description="Seeds python, numpy and torch, and the data order.")
    eval_every: int = Field(1, gt=0, description="Evaluate every N epochs (and at epoch 1 and the last epoch).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when a (visible) GPU exists, else CPU.")
