"""ModelNet10/40 as voxel grids: ``<root>/<class>/{train,test}/*.off`` -> (N, R, R, R).

Meshes are read with :mod:`trainables.data.off` and voxelised with
:mod:`trainables.data.voxelize`. A voxelised split is cached on disk as one ``.npz``
whose name holds the split, resolution, fill flag and a hash of the file list (relative
paths and sizes), so adding, removing or replacing a mesh invalidates it. A root
``s3://bucket/prefix`` is first mirrored into a local cache by
:mod:`trainables.data.storage`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data.off import read_off
from trainables.data.voxelize import voxelize_mesh

__all__ = [
    "MODELNET10_CLASSES",
    "VoxelDataset",
    "default_cache_dir",
    "list_modelnet",
    "load_modelnet_voxels",
    "resolve_root",
]

# The order of the original code (first n_classes are taken from it).
MODELNET10_CLASSES = (
    "dresser",
    "desk",
    "night_stand",
    "bathtub",
    "chair",
    "sofa",
    "monitor",
    "table",
    "toilet",
    "bed",
)
_CACHE_VERSION = 1  # bump when voxelisation changes


@dataclass(frozen=True)
class VoxelDataset:
    """bool voxels (N, R, R, R), int64 labels (N,), class names, file names."""

    voxels: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    names: tuple[str, ...]


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "orch" / "avae3d"


def list_modelnet(
    root: str | os.PathLike, split: str, classes: Sequence[str] | None = None
) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, sorted [(path, label)]) of one split; classes default to the folders."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ModelNet root {root} does not exist")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if (p / split).is_dir())
    missing = [name for name in classes if not (root / name / split).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: no {split}/ folder for classes {missing}")
    files = [(path, label) for label, name in enumerate(classes) for path in sorted((root / name / split).glob("*.off"))]
    return tuple(classes), files


def _file_list_hash(root: Path, files: list[tuple[Path, int]], classes: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{','.join(classes)}".encode())
    for path, label in files:
        digest.update(f"|{path.relative_to(root).as_posix()}:{path.stat().st_size}:{label}".encode())
    return digest.hexdigest()[:16]


def load_modelnet_voxels(
    root: str | os.PathLike,
    split: str,
    resolution: int = 32,
    classes: Sequence[str] | None = None,
    fill: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> VoxelDataset:
    """Voxelised split, from the ``.npz`` cache when the file list is unchanged."""
    root = Path(root)
    class_names, files = list_modelnet(root, split, classes)
    if not files:
        raise FileNotFoundError(f"{root}: no .off files in the {split} split")
    key = _file_list_hash(root, files, class_names)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"{root.name}_{split}_r{resolution}_{'solid' if fill else 'surface'}_{key}.npz"
    if cache_file.exists():
        with np.load(cache_file) as stored:
            return VoxelDataset(stored["voxels"], stored["labels"], class_names, tuple(stored["names"].tolist()))
    voxels = np.stack([_voxelize_file(path, resolution, fill) for path, _ in files])
    labels = np.asarray([label for _, label in files], dtype=np.int64)
    names = tuple(path.name for path, _ in files)
    _save_atomic(cache_file, voxels=voxels, labels=labels, names=np.asarray(names))
    return VoxelDataset(voxels, labels, class_names, names)


def _voxelize_file(path: Path, resolution: int, fill: bool) -> np.ndarray:
    mesh = read_off(path)
    return voxelize_mesh(mesh.vertices, mesh.faces, resolution, fill=fill)


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **arrays (as allow_pickle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_root(root: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local data root: the path itself, or the local mirror of an ``s3://`` root
    (synced by :mod:`trainables.data.storage`, the one module that speaks to S3)."""
    from trainables.data.storage import resolve_data_root

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return resolve_data_root(root, cache / "s3")
