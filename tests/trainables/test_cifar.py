"""CIFAR-10/100 pickle batches written in the published format and read back; fetch of a .tar.gz from a
local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tests.trainables.test_fetch_datasets import http_dir  # noqa: F401  (the loopback server fixture)
from trainables.data.cifar import CIFARFormatError, load_cifar_arrays, read_cifar_batch
from trainables.data.fetch import DATASETS, DataFetchError, DatasetSource, RemoteFile, fetch_dataset


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _write_batch(path, images: np.ndarray, labels, label_key: bytes = b"labels") -> None:
    """As the published files are: planes R, G, B of each image row-major in one row of 3072 bytes."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {b"batch_label": b"testing batch", label_key: list(labels), b"data": rows, b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as out:
        pickle.dump(batch, out, protocol=2)


def _cifar10_folder(root, rng, per_batch=(3, 2, 4, 1, 2), test=5):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    for i, n in enumerate(per_batch, start=1):
        images, labels = _images(rng, n), rng.integers(0, 10, n).tolist()
        _write_batch(folder / f"data_batch_{i}", images, labels)
        written["train"][0].append(images)
        written["train"][1].extend(labels)
    images, labels = _images(rng, test), rng.integers(0, 10, test).tolist()
    _write_batch(folder / "test_batch", images, labels)
    written["test"][0].append(images)
    written["test"][1].extend(labels)
    return folder, {k: (np.concatenate(v[0]), np.array(v[1])) for k, v in written.items()}


def test_cifar10_batches_read_back_in_order_as_hwc(tmp_path):
    folder, written = _cifar10_folder(tmp_path, np.random.default_rng(0))
    for split in ("train", "test"):
        images, labels = load_cifar_arrays(tmp_path, "cifar10", split)
        assert images.dtype == np.uint8 and images.shape == written[split][0].shape
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])
    again, _ = load_cifar_arrays(folder, "cifar10", "test")  # the dataset folder itself is accepted too
    np.testing.assert_array_equal(again, written["test"][0])


def test_the_channel_planes_are_decoded_as_rgb(tmp_path):
    """One red pixel at (row 1, column 2): the first 1024 bytes are the red plane, row-major."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 1 * 32 + 2] = 255
    with open(folder / "test_batch", "wb") as out:
        pickle.dump({b"data": row, b"labels": [7]}, out)
    images, labels = load_cifar_arrays(tmp_path, "cifar10", "test")
    assert images[0, 1, 2].tolist() == [255, 0, 0] and int(images.sum()) == 255 and labels.tolist() == [7]


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images, labels = _images(rng, 4), [0, 99, 42, 7]
    _write_batch(folder / "train", images, labels, label_key=b"fine_labels")
    _write_batch(folder / "test", images[:1], [5], label_key=b"fine_labels")
    got_images, got_labels = load_cifar_arrays(tmp_path, "cifar100", "train")
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.tolist() == labels


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "file missing"),
        (b"not a pickle at all", "cannot unpickle"),
        (pickle.dumps([1, 2, 3]), "holds a list, expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "no key b'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}), "expected uint8 [N, 3072]"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "data is float32"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "2 images but b'labels' has shape [1]"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "label outside 0..9"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]})[:-20], "cannot unpickle"),
        (pickle.dumps({b"data": os.system}), "refuses to load"),  # a crafted pickle never runs code
    ],
)
def test_a_bad_batch_is_one_line_naming_the_file(tmp_path, content, words):
    path = tmp_path / "test_batch"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CIFARFormatError) as raised:
        read_cifar_batch(path, b"labels", 10)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and words in message, message
    assert isinstance(raised.value, ValueError)


def test_a_missing_folder_or_batch_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="orch data fetch cifar10"):
        load_cifar_arrays(tmp_path, "cifar10", "train")
    _cifar10_folder(tmp_path, np.random.default_rng(2))
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(CIFARFormatError, match="data_batch_4: not a valid CIFAR batch: file missing"):
        load_cifar_arrays(tmp_path, "cifar10", "train")
    with pytest.raises(ValueError, match="unknown CIFAR split 'val'"):
        load_cifar_arrays(tmp_path, "cifar10", "val")  # type: ignore[arg-type]


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_fetch_cifar10_tar_gz_verify_unpack_and_skip(tmp_path, http_dir):  # noqa: F811
    served, base, requests = http_dir
    staged, written = _cifar10_folder(tmp_path / "staged", np.random.default_rng(3))
    archive = _tar_gz({f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(staged.iterdir())})
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    remote = RemoteFile("cifar-10-python.tar.gz", len(archive), hashlib.md5(archive).hexdigest())
    table = {"cifar10": DatasetSource("cifar10", ("http://unused.invalid/",), (remote,), "untar", "cifar-10-batches-py")}
    root = tmp_path / "data"
    folder = fetch_dataset("cifar10", root, base_urls=[base], sources=table)
    assert folder == root / "cifar-10-batches-py" and requests == ["/cifar-10-python.tar.gz"]
    images, labels = load_cifar_arrays(root, "cifar10", "train")
    np.testing.assert_array_equal(images, written["train"][0])
    np.testing.assert_array_equal(labels, written["train"][1])
    assert (root / "cifar-10-python.tar.gz").is_file() and not list(root.glob("*.part"))
    assert fetch_dataset("cifar10", root, base_urls=[base], sources=table) == folder  # verified, unpacked: nothing again
    assert len(requests) == 1


def test_fetch_refuses_a_tar_gz_with_a_bad_checksum_or_an_unsafe_member(tmp_path, http_dir):  # noqa: F811
    served, base, _ = http_dir
    good = _tar_gz({"cifar-10-batches-py/test_batch": b"x"})
    (served / "cifar-10-python.tar.gz").write_bytes(good)
    remote = RemoteFile("cifar-10-python.tar.gz", md5="0" * 32)
    table = {"cifar10": DatasetSource("cifar10", ("http://unused.invalid/",), (remote,), "untar", "cifar-10-batches-py")}
    with pytest.raises(DataFetchError, match="checksum mismatch"):
        fetch_dataset("cifar10", tmp_path / "a", base_urls=[base], sources=table)
    assert not (tmp_path / "a" / "cifar-10-python.tar.gz").exists()

    evil = _tar_gz({"../escaped": b"x", "cifar-10-batches-py/test_batch": b"x"})
    (served / "cifar-10-python.tar.gz").write_bytes(evil)
    table["cifar10"] = DatasetSource(
        "cifar10", ("http://unused.invalid/",), (RemoteFile("cifar-10-python.tar.gz"),), "untar", "cifar-10-batches-py"
    )
    with pytest.raises(DataFetchError, match="unsafe member in tar: ../escaped"):
        fetch_dataset("cifar10", tmp_path / "b", base_urls=[base], sources=table)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "b" / "cifar-10-batches-py").exists()

    (served / "cifar-10-python.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFetchError, match="corrupt archive"):
        fetch_dataset("cifar10", tmp_path / "c", base_urls=[base], sources=table)


def test_the_published_cifar_sources():
    for name, archive, md5 in (
        ("cifar10", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        ("cifar100", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    ):
        source = DATASETS[name]
        assert source.mirrors == ("https://www.cs.toronto.edu/~kriz/",) and source.unpack == "untar"
        assert [(f.name, f.md5) for f in source.files] == [(archive, md5)]
