"""The datasets through their real loaders: MNIST IDX files written here and read back through orch's shared
reader; the CIFAR-10 path (its reader, trainables.data.cifar, is injected as a module: it is written beside
this project) with its normalisation and the crop-and-flip augmentation, drawn from the trial's generator."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from weightshare.config import WeightShareConfig
from weightshare.data import load_dataset, random_crop_flip
from weightshare.trainable import WeightShareTrainable

from trainables.data.mnist import MNIST_FILES, write_idx


def test_mnist_idx_files_load_as_standardised_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = {"train": np.arange(30, dtype=np.uint8) % 10, "test": np.arange(20, dtype=np.uint8) % 10}
    for split, (images_name, labels_name) in MNIST_FILES.items():
        pixels = rng.integers(0, 256, (len(labels[split]), 28, 28), dtype=np.uint8)
        write_idx(tmp_path / f"{images_name}.gz", pixels)
        write_idx(tmp_path / labels_name, labels[split])
    data = load_dataset(WeightShareConfig(dataset="mnist", data_root=str(tmp_path), test_subset=12))
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_test.shape == (12, 1, 28, 28)
    assert torch.equal(data.y_train, torch.arange(30) % 10) and data.y_train.dtype == torch.int64
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1.0) < 1e-3


@pytest.fixture
def fake_cifar(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    calls: list[tuple[str, str, str]] = []

    def load_cifar_arrays(root: str, name: str = "cifar10", split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        calls.append((root, name, split))
        n = 40 if split == "train" else 20
        pixels = np.zeros((n, 32, 32, 3), dtype=np.uint8)
        pixels[..., 0] = 255  # red: channel 0 of (N, H, W, C)
        return pixels, np.arange(n, dtype=np.int64) % 10

    module = types.ModuleType("trainables.data.cifar")
    module.load_cifar_arrays = load_cifar_arrays  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "trainables.data.cifar", module)
    return calls


def test_cifar10_is_channels_first_and_normalised_with_the_usual_constants(fake_cifar: list) -> None:
    data = load_dataset(WeightShareConfig(dataset="cifar10", data_root="/data/cifar"))
    assert fake_cifar == [("/data/cifar", "cifar10", "train"), ("/data/cifar", "cifar10", "test")]
    assert data.x_train.shape == (40, 3, 32, 32) and data.in_channels == 3
    expected = torch.tensor([(1 - 0.4914) / 0.2023, -0.4822 / 0.1994, -0.4465 / 0.2010])
    assert torch.allclose(data.x_train[0, :, 5, 5], expected, atol=1e-5)


def test_a_cifar10_trial_trains_with_augmentation(fake_cifar: list) -> None:
    trial = WeightShareTrainable(config={"dataset": "cifar10", "data_root": "/d", "epochs": 1, "device": "cpu"})
    assert trial.cfg.augment_on and trial.data.in_channels == 3
    result = trial.train()
    assert result["done"] and 0.0 <= result["test_accuracy"] <= 1.0


def test_random_crop_flip_is_a_padded_crop_and_a_flip_per_image() -> None:
    x = torch.randn(16, 3, 8, 8)
    generator = torch.Generator().manual_seed(4)
    state = generator.get_state()
    out = random_crop_flip(x, generator)
    generator.set_state(state)  # the same draws, in the same order
    dy = torch.randint(0, 9, (16,), generator=generator)
    dx = torch.randint(0, 9, (16,), generator=generator)
    flip = torch.rand(16, generator=generator) < 0.5
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(16):
        crop = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], crop.flip(2) if flip[i] else crop), i
    assert bool(flip.any()) and not bool(flip.all())
