"""Triangle mesh -> occupancy voxel grid (kaolin when installed, else numpy).

Normalisation (both backends): the mesh is scaled by its largest bounding-box extent
and centred, so it spans the unit cube [0, 1]^3 along its longest axis and is centred
along the others. A point p in [0, 1]^3 falls in voxel ``clamp(floor(p * R), 0, R - 1)``
(kaolin's convention), so faces lying exactly on a voxel boundary mark the upper voxel.

Surface: every voxel holding a point of a dyadic barycentric grid on each triangle
(spacing <= half a voxel, like kaolin's midpoint subdivision) is set. ``fill=True``
then fills enclosed cavities (``scipy.ndimage.binary_fill_holes``) to give solid objects.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

__all__ = ["Backend", "kaolin_available", "normalisation", "voxelize_mesh"]

Backend = Literal["auto", "kaolin", "numpy"]
_POINTS_PER_CHUNK = 1_000_000


def kaolin_available() -> bool:
    try:
        import kaolin.ops.conversions  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA-only install
        return False
    return True


def normalisation(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """(origin (3,), scale): ``(v - origin) / scale`` is centred in the unit cube."""
    low, high = vertices.min(axis=0).astype(np.float64), vertices.max(axis=0).astype(np.float64)
    scale = float((high - low).max())
    if scale <= 0:
        raise ValueError("a mesh with zero extent cannot be voxelised")
    origin = (low + high) / 2 - scale / 2
    return origin, scale


def voxelize_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: int,
    fill: bool = True,
    backend: Backend = "auto",
) -> np.ndarray:
    """Occupancy grid bool (R, R, R) of a triangle mesh; axes are the vertex x, y, z."""
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be triangles (M, 3), got shape {faces.shape}")
    origin, scale = normalisation(vertices)
    use_kaolin = backend == "kaolin" or (backend == "auto" and kaolin_available())
    if use_kaolin:
        grid = _kaolin_surface(vertices, faces, resolution, origin, scale)
    else:
        unit = (vertices.astype(np.float64) - origin) / scale
        grid = _numpy_surface(unit, faces, resolution)
    if fill:
        from scipy.ndimage import binary_fill_holes

        grid = binary_fill_holes(grid)
    return grid.astype(bool)


def _kaolin_surface(vertices, faces, resolution, origin, scale) -> np.ndarray:
    import torch
    from kaolin.ops.conversions import trianglemeshes_to_voxelgrids

    grid = trianglemeshes_to_voxelgrids(
        torch.as_tensor(vertices, dtype=torch.float32)[None],
        torch.as_tensor(faces, dtype=torch.long),
        resolution,
        origin=torch.as_tensor(origin, dtype=torch.float32)[None],
        scale=torch.tensor([scale], dtype=torch.float32),
    )
    return grid[0].bool().cpu().numpy()


@lru_cache(maxsize=16)
def _barycentric_grid(n: int) -> np.ndarray:
    """(P, 2) weights (a, b) = (i/n, j/n), i + j <= n: the points of n-fold subdivision."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = (i + j) <= n
    return np.stack([i[keep], j[keep]], axis=1).astype(np.float64) / n


def _numpy_surface(unit: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    grid = np.zeros((resolution,) * 3, dtype=bool)
    triangles = unit[faces] * resolution  # (M, 3, 3) in voxel units
    edges = np.stack(
        [triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0], triangles[:, 2] - triangles[:, 1]],
        axis=1,
    )
    longest = np.linalg.norm(edges, axis=2).max(axis=1)  # (M,)
    # Subdivide 2^d times so that sub-edges are at most half a voxel long.
    levels = np.ceil(np.log2(np.maximum(2 * longest, 1.0))).astype(int)
    for level in np.unique(levels):
        weights = _barycentric_grid(2 ** int(level))  # (P, 2)
        chunk = max(1, _POINTS_PER_CHUNK // len(weights))  # bounds memory on big meshes
        selected = triangles[levels == level]
        for start in range(0, len(selected), chunk):
            _mark(grid, selected[start : start + chunk], weights, resolution)
    return grid


def _mark(grid: np.ndarray, group: np.ndarray, weights: np.ndarray, resolution: int) -> None:
    v0, e1, e2 = group[:, 0], group[:, 1] - group[:, 0], group[:, 2] - group[:, 0]
    points = (v0[:, None, :] + weights[None, :, :1] * e1[:, None, :] + weights[None, :, 1:] * e2[:, None, :]).reshape(-1, 3)
    index = np.clip(np.floor(points).astype(np.int64), 0, resolution - 1)
    grid[index[:, 0], index[:, 1], index[:, 2]] = True
