"""IDX reader/writer and the MNIST dataset, on small IDX files written by the test."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.data.mnist import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    MNIST,
    IDXFormatError,
    read_idx,
    write_idx,
)


@pytest.fixture(scope="module")
def digits_28():
    """40 scikit-learn digits upscaled to 28x28 uint8, with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images[:40].astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=20, mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).clamp(0, 1)  # MNIST-like: 20x20 digit centred in 28x28
    images = (x[:, 0] * 255).round().to(torch.uint8).numpy()
    return images, digits.target[:40].astype(np.uint8)


def _write_mnist(root, images, labels, gz: bool, split: str = "train"):
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, digits_28, gz):
    images, labels = digits_28
    _write_mnist(tmp_path, images, labels, gz)
    data = MNIST(tmp_path, "train")
    assert len(data) == 40
    assert data.images.shape == (40, 1, 28, 28) and data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert torch.equal((data.images[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    image, label = data[3]
    assert image.shape == (1, 28, 28) and label.dtype == torch.int64 and int(label) == labels[3]


def test_header_is_the_real_idx_format(tmp_path, digits_28):
    images, labels = digits_28
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", labels)
    raw = (tmp_path / "img").read_bytes()
    assert struct.unpack(">IIII", raw[:16]) == (IMAGES_MAGIC, 40, 28, 28)
    assert len(raw) == 16 + 40 * 28 * 28
    assert struct.unpack(">II", (tmp_path / "lab").read_bytes()[:8]) == (LABELS_MAGIC, 40)


def test_other_dtypes_round_trip(tmp_path):
    for array in (np.arange(6, dtype=np.int32).reshape(2, 3) - 3, np.linspace(0, 1, 5).astype(np.float32)):
        write_idx(tmp_path / "a.idx", array)
        back = read_idx(tmp_path / "a.idx")
        assert back.dtype == array.dtype and np.array_equal(back, array)


def test_loader_uses_the_test_split_names(tmp_path, digits_28):
    images, labels = digits_28
    _write_mnist(tmp_path, images[:10], labels[:10], gz=True, split="test")
    assert len(MNIST(tmp_path, "test")) == 10
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        MNIST(tmp_path, "train")


def test_corrupt_files_raise_clear_errors(tmp_path, digits_28):
    images, labels = digits_28
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, images)
    raw = path.read_bytes()

    path.write_bytes(raw[:-5])  # truncated
    with pytest.raises(IDXFormatError, match=r"size 31371 bytes, dimensions \[40, 28, 28\] need 31376"):
        read_idx(path)
    path.write_bytes(b"\x12\x34" + raw[2:])  # bad magic
    with pytest.raises(IDXFormatError, match="bad magic number 0x12340803"):
        read_idx(path)
    path.write_bytes(raw[:2])
    with pytest.raises(IDXFormatError, match="shorter than the 4-byte magic"):
        read_idx(path)
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw)[:100])
    with pytest.raises(IDXFormatError, match="corrupt gzip"):
        read_idx(tmp_path / "x.gz")

    # Labels file in the images slot: right format, wrong kind.
    write_idx(path, labels)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(IDXFormatError, match="magic number 0x00000801, expected 0x00000803"):
        MNIST(tmp_path)
    # Counts that disagree.
    write_idx(path, images[:39])
    with pytest.raises(IDXFormatError, match="39 images but train-labels-idx1-ubyte has 40 labels"):
        MNIST(tmp_path)
    # Labels outside 0..9.
    write_idx(path, images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(40, 12, dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="label 12 outside 0..9"):
        MNIST(tmp_path)


def test_writer_refuses_unsupported_dtypes(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.uint16))
