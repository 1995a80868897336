"""Download, verify and unpack the public datasets: ``fetch_dataset(name, root)``.

Layout under ``root`` (what the loaders read)::

    mnist/train-images-idx3-ubyte.gz + train-images-idx3-ubyte  (and the other 3 files)
    ModelNet10/<class>/{train,test}/*.off    (from ModelNet10.zip, kept next to it)
    ModelNet40/<class>/{train,test}/*.off    (from ModelNet40.zip)
    cifar-10-batches-py/data_batch_1..5, test_batch   (from cifar-10-python.tar.gz, kept next to it)
    cifar-100-python/train, test                      (from cifar-100-python.tar.gz)

Idempotent: a file that is present and verifies is not downloaded again, an archive
already unpacked (marker ``.unpacked`` in its folder) is not unpacked again.
Downloads stream to ``<name>.part`` and are renamed only after verification; a file
that fails verification is deleted. Every failure is a :class:`DataFetchError` with a
one-line message (no network -> "cannot reach <host>: ...; fetch on a machine with
internet and copy <root>").
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DATASETS", "DataFetchError", "DatasetSource", "RemoteFile", "fetch_dataset"]

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_UNPACKED_MARKER = ".unpacked"


class DataFetchError(RuntimeError):
    """A dataset that could not be downloaded, verified or unpacked."""

    def __init__(self, dataset: str, url: str, reason: str) -> None:
        self.dataset, self.url, self.reason = dataset, url, reason
        super().__init__(f"cannot fetch {dataset} from {url}: {reason}")


@dataclass(frozen=True)
class RemoteFile:
    """One published file and what is known to verify it (None = not published)."""

    name: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset lives: mirrors tried in order, its files, how to unpack them."""

    name: str
    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    unpack: Literal["gunzip", "unzip", "untar"]
    folder: str  # returned path: root / folder


DATASETS: dict[str, DatasetSource] = {
    # MD5s and sizes as published with torchvision's MNIST (the original files of
    # yann.lecun.com; the ossci mirror is what torchvision downloads first).
    "mnist": DatasetSource(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        unpack="gunzip",
        folder="mnist",
    ),
    # Princeton publishes no checksums for ModelNet (neither do torch_geometric or
    # kaolin, which download the same zips): verified by zip integrity (every member's
    # CRC) and the expected top-level folder only.
    "modelnet10": DatasetSource(
        name="modelnet10",
        mirrors=("http://3dvision.princeton.edu/projects/2014/3DShapeNets/",),
        files=(RemoteFile("ModelNet10.zip"),),
        unpack="unzip",
        folder="ModelNet10",
    ),
    "modelnet40": DatasetSource(
        name="modelnet40",
        mirrors=("http://modelnet.cs.princeton.edu/",),
        files=(RemoteFile("ModelNet40.zip"),),
        unpack="unzip",
        folder="ModelNet40",
    ),
    # MD5s as published on www.cs.toronto.edu/~kriz/cifar.html (no sizes are published there).
    "cifar10": DatasetSource(
        name="cifar10",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),),
        unpack="untar",
        folder="cifar-10-batches-py",
    ),
    "cifar100": DatasetSource(
        name="cifar100",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85"),),
        unpack="untar",
        folder="cifar-100-python",
    ),
}


def fetch_dataset(
    name: str,
    root: Path,
    *,
    base_urls: Sequence[str] | None = None,
    sources: Mapping[str, DatasetSource] | None = None,
) -> Path:
    """Download (if needed), verify and unpack dataset ``name`` under ``root``.

    ``base_urls`` replaces the dataset's mirrors (e.g. an internal copy); ``sources``
    replaces the table of known datasets (tests). Returns the dataset folder.
    """
    table = DATASETS if sources is None else sources
    if name not in table:
        raise DataFetchError(name, "-", f"unknown dataset; valid: {', '.join(sorted(table))}")
    source = table[name]
    mirrors = tuple(base_urls) if base_urls else source.mirrors
    root = Path(root).expanduser()
    download_dir = root / source.folder if source.unpack == "gunzip" else root
    download_dir.mkdir(parents=True, exist_ok=True)
    for remote in source.files:
        path = download_dir / remote.name
        if not (path.is_file() and _verified(path, remote)):
            _download(source.name, remote, mirrors, path, root)
        _unpack(source, remote, path, root)
    return root / source.folder


# --------------------------------------------------------------------------- download
def _download(dataset: str, remote: RemoteFile, mirrors: Sequence[str], path: Path, root: Path) -> None:
    """Try each mirror; the last failure is raised if none serves a verified file."""
    error: DataFetchError | None = None
    for base in mirrors:
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", remote.name)
        try:
            _download_one(dataset, url, remote, path, root)
            return
        except DataFetchError as failure:
            error = failure
    if error is None:
        raise DataFetchError(dataset, remote.name, "no mirror URLs configured")
    raise error


def _download_one(dataset: str, url: str, remote: RemoteFile, path: Path, root: Path) -> None:
    part = path.with_name(path.name + ".part")
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(part, "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as error:
        part.unlink(missing_ok=True)
        raise DataFetchError(dataset, url, f"HTTP {error.code} {error.reason}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as error:
        part.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        host = urllib.parse.urlsplit(url).netloc
        raise DataFetchError(
            dataset,
            url,
            f"cannot reach {host}: {_one_line(reason)}; fetch on a machine with internet and copy {root}",
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    problem = _check_digests(remote, size, md5.hexdigest(), sha256.hexdigest())
    problem = problem or _archive_problem(part, remote.name)
    if problem:
        part.unlink(missing_ok=True)
        raise DataFetchError(dataset, url, f"{problem}; the partial download was removed")
    os.replace(part, path)
    _write_verified_stamp(path)


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split())


def _check_digests(remote: RemoteFile, size: int, md5: str, sha256: str) -> str | None:
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.md5 is not None and md5 != remote.md5:
        return f"checksum mismatch: md5 {md5}, expected {remote.md5}"
    if remote.sha256 is not None and sha256 != remote.sha256:
        return f"checksum mismatch: sha256 {sha256}, expected {remote.sha256}"
    return None


def _archive_problem(path: Path, name: str) -> str | None:
    """Integrity of a .tar.gz / .gz / .zip (read completely), None when fine."""
    try:
        if name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as archive:
                for _ in archive:  # every header and, through the gzip stream, every byte
                    pass
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                while handle.read(_CHUNK_BYTES):
                    pass
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"corrupt zip member {bad}"
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as error:
        return f"corrupt archive ({_one_line(error)})"
    return None


# A verified file gets a stamp (size + mtime) so that large archives without published
# checksums are not re-read on every call.
def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _write_verified_stamp(path: Path) -> None:
    stat = path.stat()
    _stamp_path(path).write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))


def _verified(path: Path, remote: RemoteFile) -> bool:
    stat = path.stat()
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        if stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return True
    except (OSError, ValueError):
        pass
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
    if _check_digests(remote, stat.st_size, md5.hexdigest(), sha256.hexdigest()):
        return False
    if _archive_problem(path, remote.name):
        return False
    _write_verified_stamp(path)
    return True


# --------------------------------------------------------------------------- unpack
def _unpack(source: DatasetSource, remote: RemoteFile, path: Path, root: Path) -> None:
    if source.unpack == "gunzip":
        target = path.with_name(path.name.removesuffix(".gz"))
        if target.is_file():
            return
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK_BYTES)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return
    _unpack_archive(source, path, root)


def _unpack_archive(source: DatasetSource, path: Path, root: Path) -> None:
    """A .zip or .tar.gz into root/<folder>, through a staging folder (an interrupted unpack leaves nothing half-done)."""
    target = root / source.folder
    if (target / _UNPACKED_MARKER).is_file():
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{source.folder}.", dir=root))
    try:
        if source.unpack == "untar":
            _extract_tar(source, path, staging)
        else:
            _extract_zip(source, path, staging)
        unpacked = staging / source.folder
        if not unpacked.is_dir():
            raise DataFetchError(source.name, str(path), f"archive has no top-level folder {source.folder}/")
        (unpacked / _UNPACKED_MARKER).write_text(path.name + "\n")
        if target.exists():  # an earlier, interrupted unpack
            shutil.rmtree(target)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_zip(source: DatasetSource, path: Path, staging: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            resolved = (staging / member).resolve()
            if not resolved.is_relative_to(staging.resolve()):
                raise DataFetchError(source.name, str(path), f"unsafe path in zip: {member}")
        archive.extractall(staging)


def _extract_tar(source: DatasetSource, path: Path, staging: Path) -> None:
    """Regular files and folders only, each inside the staging folder (no links, devices or absolute paths)."""
    with tarfile.open(path, "r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            resolved = (staging / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not resolved.is_relative_to(staging.resolve()):
                raise DataFetchError(source.name, str(path), f"unsafe member in tar: {member.name}")
        archive.extractall(staging, members=members, filter="data")
