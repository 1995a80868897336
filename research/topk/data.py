"""The datasets as in-memory float tensors (N, C, H, W) in [0, 1] (the networks normalise them), int64 labels,
and the per-channel mean/std the networks normalise with; the CIFAR augmentation from a given generator.

* digits: scikit-learn's 8x8 digits, x/16, bilinear to 16x16; stratified 80/20 split, seed 0
  (1,437 train / 360 test); mean/std of the training set.
* cifar10: the python batches in ``data_root`` through trainables.data.cifar (imported only here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from topk.config import TopKConfig

__all__ = ["Dataset", "load_dataset", "random_crop_flip"]

_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)
_DIGITS_SIZE = 16
_SPLIT_SEED = 0
_CROP_PADDING = 4


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_classes: int = 10

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device) -> Dataset:
        return Dataset(
            self.x_train.to(device), self.y_train.to(device), self.x_test.to(device), self.y_test.to(device), self.mean, self.std
        )


def load_dataset(cfg: TopKConfig) -> Dataset:
    if cfg.dataset == "digits":
        x_train, y_train, x_test, y_test = _digits()
    else:
        from trainables.data.cifar import load_cifar_arrays  # written beside this project; CIFAR only

        x_train, y_train = _images(*load_cifar_arrays(str(cfg.data_root), name="cifar10", split="train"))
        x_test, y_test = _images(*load_cifar_arrays(str(cfg.data_root), name="cifar10", split="test"))
    x_train, y_train = x_train[: cfg.train_subset], y_train[: cfg.train_subset]
    x_test, y_test = x_test[: cfg.test_subset], y_test[: cfg.test_subset]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if cfg.dataset == "cifar10":
        mean, std = _CIFAR_MEAN, _CIFAR_STD
    else:
        mean = tuple(float(v) for v in x_train.mean(dim=(0, 2, 3)))
        std = tuple(float(v) for v in x_train.std(dim=(0, 2, 3)))
    return Dataset(x_train, y_train, x_test, y_test, mean, std)


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=_SPLIT_SEED
    )

    def images(raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(raw.astype(np.float32) / 16.0).unsqueeze(1)
        return F.interpolate(x, size=_DIGITS_SIZE, mode="bilinear", align_corners=False).clamp_(0.0, 1.0)

    return images(x_train), _labels(y_train), images(x_test), _labels(y_test)


def _images(pixels: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return x, _labels(labels)


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels).astype(np.int64))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding=4) and RandomHorizontalFlip per image; offsets drawn on the CPU from ``generator``."""
    n, _, height, width = x.shape
    pad = _CROP_PADDING
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(height, device=x.device)
    cols = dx[:, None] + torch.arange(width, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
