"""The 3D AVAE's data: synthetic shapes or ModelNet, as float grids (N, 1, n, n, n).

Objects are voxelised at ``resolution`` in their canonical (data) orientation and
zero-padded to ``grid_size`` (the original padded 32^3 to 48^3 so that rotated
objects stay inside the grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainables.avae3d.config import AVAE3DConfig
from trainables.data.modelnet import MODELNET10_CLASSES, load_modelnet_voxels, resolve_root
from trainables.data.shapes3d import SHAPE_CLASSES, boxes_to_mesh, generate_shape
from trainables.data.voxelize import voxelize_mesh

__all__ = ["VoxelSplit", "load_voxel_split", "synthetic_voxels"]


@dataclass(frozen=True)
class VoxelSplit:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]


def synthetic_voxels(
    n_per_class: int,
    resolution: int,
    seed: int,
    classes: tuple[str, ...] = SHAPE_CLASSES,
    fill: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(voxels bool (N, R, R, R), labels (N,)) of seeded synthetic shapes, class-interleaved."""
    rng = np.random.default_rng(seed)
    grids, labels = [], []
    for _ in range(n_per_class):
        for label, name in enumerate(classes):
            vertices, faces = boxes_to_mesh(generate_shape(name, rng))
            grids.append(voxelize_mesh(vertices, np.asarray(faces), resolution, fill=fill))
            labels.append(label)
    return np.stack(grids), np.asarray(labels, dtype=np.int64)


def _classes(cfg: AVAE3DConfig, available: tuple[str, ...]) -> tuple[str, ...]:
    classes = tuple(cfg.classes) if cfg.classes else available
    unknown = [c for c in classes if c not in available] if cfg.dataset == "synthetic" else []
    if unknown:
        raise ValueError(f"unknown classes {unknown}; valid: {', '.join(available)}")
    return classes[: cfg.n_classes] if cfg.n_classes else classes


def _to_tensor(voxels: np.ndarray, grid_size: int, limit: int | None) -> torch.Tensor:
    x = torch.from_numpy(voxels[:limit].astype(np.float32)).unsqueeze(1)
    pad = (grid_size - x.shape[-1]) // 2
    return F.pad(x, (pad,) * 6) if pad else x


def load_voxel_split(cfg: AVAE3DConfig) -> VoxelSplit:
    """Train/test grids of the configured dataset (ModelNet "test" is the validation split)."""
    if cfg.dataset == "synthetic":
        classes = _classes(cfg, SHAPE_CLASSES)
        x_tr, y_tr = synthetic_voxels(cfg.synthetic_train_per_class, cfg.resolution, cfg.data_seed, classes, cfg.fill)
        x_te, y_te = synthetic_voxels(cfg.synthetic_test_per_class, cfg.resolution, cfg.data_seed + 1, classes, cfg.fill)
    else:
        if cfg.data_root is None:  # the config's validator already rejects this
            raise ValueError(f"dataset {cfg.dataset!r} needs data_root")
        root = resolve_root(cfg.data_root, cfg.cache_dir)
        default = (
            MODELNET10_CLASSES
            if cfg.dataset == "modelnet10"
            else tuple(sorted(p.name for p in root.iterdir() if (p / "train").is_dir()))
        )
        classes = _classes(cfg, default)
        train = load_modelnet_voxels(root, "train", cfg.resolution, classes, cfg.fill, cfg.cache_dir)
        test = load_modelnet_voxels(root, "test", cfg.resolution, classes, cfg.fill, cfg.cache_dir)
        x_tr, y_tr, x_te, y_te = train.voxels, train.labels, test.voxels, test.labels
    return VoxelSplit(
        _to_tensor(x_tr, cfg.grid_size, cfg.train_subset),
        torch.from_numpy(y_tr[: cfg.train_subset]),
        _to_tensor(x_te, cfg.grid_size, cfg.test_subset),
        torch.from_numpy(y_te[: cfg.test_subset]),
        classes,
    )
