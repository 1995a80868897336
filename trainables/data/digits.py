"""scikit-learn digits as 24x24 images in [0, 1] (EXPERIMENTS.md 2.6).

``x / 16`` -> bilinear upsample 8x8 -> 16x16 -> zero-pad to 24x24 (room to rotate),
stratified 80/20 split with seed 0: 1,437 train / 360 test digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

__all__ = ["DigitsSplit", "IMAGE_SIZE", "N_CLASSES", "load_digits_split", "stratified_subset"]

IMAGE_SIZE = 24
N_CLASSES = 10
_UPSAMPLED_SIZE = 16
_SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    """Float images (N, 1, 24, 24) in [0, 1] and int64 labels (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _to_images(raw: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(raw.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=_UPSAMPLED_SIZE, mode="bilinear", align_corners=False)
    pad = (IMAGE_SIZE - _UPSAMPLED_SIZE) // 2
    return F.pad(x, (pad, pad, pad, pad)).clamp_(0.0, 1.0)


def stratified_subset(x: np.ndarray, y: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(y):
        return x, y
    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=size, stratify=y, random_state=_SPLIT_SEED)
    return x_sub, y_sub


def load_digits_split(train_subset: int | None = None, test_subset: int | None = None) -> DigitsSplit:
    """The fixed train/test split, optionally subsampled (stratified, deterministic)."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=_SPLIT_SEED
    )
    x_train, y_train = stratified_subset(x_train, y_train, train_subset)
    x_test, y_test = stratified_subset(x_test, y_test, test_subset)
    return DigitsSplit(
        x_train=_to_images(x_train),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=_to_images(x_test),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
    )
