"""MNIST from the original IDX files (optionally gzipped), and an IDX reader/writer.

IDX format (yann.lecun.com/exdb/mnist): big-endian header ``0x00 0x00 <type> <ndim>``
then ``ndim`` uint32 dimension sizes, then the data in C order. MNIST uses type 0x08
(uint8): labels have magic 0x00000801 (1-D), images 0x00000803 (N x 28 x 28).

Files in a data root, as published (``.gz`` or unpacked, either is read)::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "IDXFormatError",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MNIST",
    "MNIST_FILES",
    "find_mnist_file",
    "load_mnist_arrays",
    "read_idx",
    "write_idx",
]

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
N_CLASSES = 10

# IDX type code -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder(">").str: code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """A file that is not a well-formed IDX file (or not the expected kind)."""

    def __init__(self, path: os.PathLike | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: not a valid IDX file: {reason}")


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise IDXFormatError(path, f"corrupt gzip data ({error})") from None


def read_idx(path: os.PathLike | str, expected_magic: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (gzip detected by content); native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXFormatError(path, f"{len(raw)} bytes, shorter than the 4-byte magic number")
    magic = struct.unpack(">I", raw[:4])[0]
    zero, type_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise IDXFormatError(path, f"bad magic number 0x{magic:08x}")
    if expected_magic is not None and magic != expected_magic:
        raise IDXFormatError(path, f"magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(path, f"truncated header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[type_code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise IDXFormatError(path, f"size {len(raw)} bytes, dimensions {list(dims)} need {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: os.PathLike | str, array: np.ndarray) -> Path:
    """Write ``array`` as IDX (gzipped when the name ends in ``.gz``), atomically."""
    path = Path(path)
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">")
    code = _CODES.get(big_endian.str)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; valid: uint8, int8, int16, int32, float32, float64")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    payload = struct.pack(">BBBB", 0, 0, code, array.ndim)
    payload += struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=big_endian).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def find_mnist_file(root: os.PathLike | str, name: str) -> Path:
    """``root/name`` or ``root/name.gz``, whichever exists (unpacked preferred)."""
    root = Path(root)
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{root}: no {name} or {name}.gz; fetch MNIST with `orch data fetch mnist --root DIR`")


def load_mnist_arrays(root: os.PathLike | str, split: Literal["train", "test"] = "train") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W), uint8 labels (N,)) of one split, validated."""
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; valid: {', '.join(MNIST_FILES)}")
    images_name, labels_name = MNIST_FILES[split]
    images_path = find_mnist_file(root, images_name)
    labels_path = find_mnist_file(root, labels_name)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(images_path, f"{images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise IDXFormatError(labels_path, f"label {int(labels.max())} outside 0..{N_CLASSES - 1}")
    return images, labels


class MNIST(torch.utils.data.Dataset):
    """MNIST split from IDX files: ``images`` float (N, 1, H, W) in [0, 1], ``labels`` int64.

    ``dataset[i]`` is ``(image (1, H, W), label)``; the whole split is in memory
    (47 MB of float32 for the 60k training images), so a trainable can also index
    ``dataset.images`` directly and move it to the GPU at once.
    """

    def __init__(self, root: os.PathLike | str, split: Literal["train", "test"] = "train") -> None:
        images, labels = load_mnist_arrays(root, split)
        self.root, self.split = Path(root), split
        self.images = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]
