"""The AVAE's images: scikit-learn digits or MNIST, zero-padded to the config's canvas (room to rotate).

``dataset: digits`` is the spec's small scale (EXPERIMENTS.md 2.6: 8x8 digits upsampled to 16x16 and padded;
1,437 train / 360 test). ``dataset: mnist`` reads the four standard IDX files (plain or gzipped) from
``data_root``, a local folder or ``s3://bucket/prefix`` (mirrored by :mod:`trainables.data.storage`), and pads
the 28x28 digits to the canvas as the paper did (40x40). ``train_subset`` / ``test_subset`` take stratified,
deterministic subsets of either. Images are float in [0, 1], (N, 1, canvas, canvas).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainables.avae.config import AVAEConfig
from trainables.data.digits import DigitsSplit, load_digits_split, stratified_subset
from trainables.data.mnist import load_mnist_arrays

__all__ = ["load_avae_split", "pad_to_canvas"]


def pad_to_canvas(x: torch.Tensor, canvas: int) -> torch.Tensor:
    """Zero-pad (N, 1, H, W) images to (N, 1, canvas, canvas), centred (the extra pixel, if any, right/bottom)."""
    height, width = x.shape[-2:]
    if height > canvas or width > canvas:
        raise ValueError(f"{height}x{width} images do not fit a {canvas}x{canvas} canvas")
    top, left = (canvas - height) // 2, (canvas - width) // 2
    return F.pad(x, (left, canvas - width - left, top, canvas - height - top))


def _cache_dir(config: AVAEConfig) -> Path:
    if config.cache_dir:
        return Path(config.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "orch" / "avae"


def _mnist_images(images: np.ndarray, canvas: int) -> torch.Tensor:
    return pad_to_canvas(torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1), canvas)


def load_avae_split(config: AVAEConfig) -> DigitsSplit:
    """Training and test images of the configured dataset on the configured canvas, with their labels."""
    canvas = config.image_canvas
    if config.dataset == "digits":
        split = load_digits_split(config.train_subset, config.test_subset)
        if canvas == split.x_train.shape[-1]:
            return split
        return DigitsSplit(pad_to_canvas(split.x_train, canvas), split.y_train, pad_to_canvas(split.x_test, canvas), split.y_test)
    from trainables.data.storage import resolve_data_root

    assert config.data_root is not None  # the config requires it for mnist
    root = resolve_data_root(config.data_root, _cache_dir(config) / "s3")
    train_images, train_labels = stratified_subset(*load_mnist_arrays(root, "train"), config.train_subset)
    test_images, test_labels = stratified_subset(*load_mnist_arrays(root, "test"), config.test_subset)
    return DigitsSplit(
        x_train=_mnist_images(train_images, canvas),
        y_train=torch.from_numpy(train_labels.astype(np.int64)),
        x_test=_mnist_images(test_images, canvas),
        y_test=torch.from_numpy(test_labels.astype(np.int64)),
    )
