"""CIFAR-10 / CIFAR-100 from the original python pickle batches (www.cs.toronto.edu/~kriz/cifar.html).

Each batch is a pickled dict with bytes keys: ``b"data"`` a uint8 array (N, 3072) holding per image
the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major order, and the
labels as a list of ints: ``b"labels"`` (CIFAR-10, 0..9) or ``b"fine_labels"`` (CIFAR-100, 0..99).

Files in a data root, as ``orch data fetch cifar10|cifar100 --root DIR`` unpacks them::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch   (10,000 images each)
    cifar-100-python/train (50,000), test (10,000)

``load_cifar_arrays(root, ...)`` accepts the data root or the dataset folder itself.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["CIFAR_LAYOUT", "CIFARFormatError", "find_cifar_folder", "load_cifar_arrays", "read_cifar_batch"]

_SIDE = 32
_PIXELS = _SIDE * _SIDE * 3

# name -> (folder, {split: batch files}, label key, number of classes)
CIFAR_LAYOUT: dict[str, tuple[str, dict[str, tuple[str, ...]], bytes, int]] = {
    "cifar10": (
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        b"labels",
        10,
    ),
    "cifar100": ("cifar-100-python", {"train": ("train",), "test": ("test",)}, b"fine_labels", 100),
}


class CIFARFormatError(ValueError):
    """A CIFAR batch file that is missing, unreadable or not in the published format."""

    def __init__(self, path: os.PathLike | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: not a valid CIFAR batch: {reason}")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (dicts, lists, numpy arrays) and refuses any other class, so a
    crafted file in a data root cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name}")
        return super().find_class(module, name)


def find_cifar_folder(root: os.PathLike | str, name: str) -> Path:
    """``root/<dataset folder>``, or ``root`` itself when it is that folder."""
    if name not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR dataset {name!r}; valid: {', '.join(CIFAR_LAYOUT)}")
    folder_name = CIFAR_LAYOUT[name][0]
    root = Path(root)
    for candidate in (root / folder_name, root):
        if candidate.name == folder_name and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{root}: no {folder_name}/; fetch it with `orch data fetch {name} --root {root}`")


def read_cifar_batch(path: os.PathLike | str, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 32, 32, 3) HWC, int64 labels (N,)) of one pickled batch, validated."""
    path = Path(path)
    if not path.is_file():
        raise CIFARFormatError(path, "file missing")
    try:
        with open(path, "rb") as handle:
            batch: Any = _BatchUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as error:
        raise CIFARFormatError(path, f"cannot unpickle ({type(error).__name__}: {' '.join(str(error).split())})") from None
    if not isinstance(batch, dict):
        raise CIFARFormatError(path, f"holds a {type(batch).__name__}, expected a dict")
    for key in (b"data", label_key):
        if key not in batch:
            found = ", ".join(repr(k) for k in batch) or "none"
            raise CIFARFormatError(path, f"no key {key!r} (keys: {found})")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise CIFARFormatError(path, f"data is {data.dtype} {list(data.shape)}, expected uint8 [N, {_PIXELS}]")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise CIFARFormatError(path, f"{label_key!r} are not integers") from None
    if labels.shape != (data.shape[0],):
        raise CIFARFormatError(path, f"{data.shape[0]} images but {label_key!r} has shape {list(labels.shape)}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise CIFARFormatError(path, f"label outside 0..{n_classes - 1} ({int(labels.min())}..{int(labels.max())})")
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)  # planes (R, G, B) -> HWC
    return np.ascontiguousarray(images), labels


def load_cifar_arrays(
    root: os.PathLike | str,
    name: Literal["cifar10", "cifar100"] = "cifar10",
    split: Literal["train", "test"] = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 32, 32, 3) HWC, int64 labels (N,)) of one split, its batches in published order."""
    folder = find_cifar_folder(root, name)
    _, splits, label_key, n_classes = CIFAR_LAYOUT[name]
    if split not in splits:
        raise ValueError(f"unknown CIFAR split {split!r}; valid: {', '.join(splits)}")
    parts = [read_cifar_batch(folder / batch, label_key, n_classes) for batch in splits[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
