"""The 24 proper rotations of the cube, and continuous rotations of voxel grids.

Convention: a grid ``x[..., i0, i1, i2]`` lives in centred index coordinates
``p_a = i_a - (n - 1) / 2``; rotating an object by R moves its point p to R p, i.e.
``out[p] = x[R^T p]``. For the 24 cube rotations (signed permutation matrices) this is
an exact permutation of voxels (a composition of ``torch.rot90``); other rotations use
``affine_grid`` + trilinear ``grid_sample`` (zero padding, ``align_corners=False``, whose
normalised coordinates are the centred ones scaled by 2 / n on every axis).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "N_CUBE_ROTATIONS",
    "RotationSampling",
    "affine_transform",
    "all_cube_rotations",
    "composition_table",
    "cube_rotation_matrices",
    "grid_permutations",
    "random_rotation_matrices",
    "rotate_cube",
    "rotvec_to_matrix",
]

N_CUBE_ROTATIONS = 24
RotationSampling = Literal["quaternion", "euler"]

_QUARTER_X = ((1, 0, 0), (0, 0, -1), (0, 1, 0))
_QUARTER_Y = ((0, 0, 1), (0, 1, 0), (-1, 0, 0))


@lru_cache(maxsize=1)
def _cube_matrices_tuple() -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Closure of {90° about x, 90° about y} under composition, breadth first from I."""
    generators = [torch.tensor(_QUARTER_X), torch.tensor(_QUARTER_Y)]
    found = [torch.eye(3, dtype=torch.int64)]
    seen = {tuple(map(tuple, found[0].tolist()))}
    frontier = list(found)
    while frontier:
        new = []
        for matrix in frontier:
            for generator in generators:
                product = generator @ matrix
                key = tuple(map(tuple, product.tolist()))
                if key not in seen:
                    seen.add(key)
                    found.append(product)
                    new.append(product)
        frontier = new
    return tuple(tuple(map(tuple, m.tolist())) for m in found)


def cube_rotation_matrices() -> torch.Tensor:
    """The 24 rotations as int64 (24, 3, 3); index 0 is the identity."""
    return torch.tensor(_cube_matrices_tuple(), dtype=torch.int64)


@lru_cache(maxsize=1)
def _composition_list() -> list[list[int]]:
    matrices = cube_rotation_matrices()
    keys = {tuple(m.flatten().tolist()): i for i, m in enumerate(matrices)}
    return [[keys[tuple((a @ b).flatten().tolist())] for b in matrices] for a in matrices]


def composition_table() -> torch.Tensor:
    """(24, 24) int64: ``table[a, b]`` is the index of ``M_a @ M_b`` (b first, then a)."""
    return torch.tensor(_composition_list(), dtype=torch.int64)


def _permute_and_flip(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``out[p] = x[M^T p]`` for a signed permutation M, on the last three dims."""
    sigma = [int(torch.nonzero(matrix[a]).item()) for a in range(3)]
    signs = [int(matrix[a, sigma[a]]) for a in range(3)]
    lead = x.dim() - 3
    out = x.permute(*range(lead), *(lead + s for s in sigma))
    flips = [lead + a for a in range(3) if signs[a] < 0]
    return out.flip(flips) if flips else out


@lru_cache(maxsize=8)
def _permutations_cpu(n: int) -> torch.Tensor:
    ids = torch.arange(n**3).view(n, n, n)
    return torch.stack([_permute_and_flip(ids, m).reshape(-1) for m in cube_rotation_matrices()])


def grid_permutations(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(24, n^3) int64: ``rotated.flatten() == grid.flatten()[perm[r]]`` for rotation r."""
    return _permutations_cpu(n).to(device)


def rotate_cube(x: torch.Tensor, index: torch.Tensor | int) -> torch.Tensor:
    """Rotate grids (B, C, n, n, n) by cube rotation ``index`` (int or per-sample (B,))."""
    n = x.shape[-1]
    flat = x.flatten(2)
    perms = grid_permutations(n, x.device)
    if isinstance(index, int):
        return flat[:, :, perms[index]].view_as(x)
    gather = perms[index.to(x.device)].unsqueeze(1).expand(-1, x.shape[1], -1)
    return flat.gather(2, gather).view_as(x)


def all_cube_rotations(x: torch.Tensor) -> torch.Tensor:
    """All 24 rotations of every grid in one gather: (B * 24, C, n, n, n), sample-major."""
    b, c, n = x.shape[0], x.shape[1], x.shape[-1]
    rotated = x.flatten(2)[:, :, grid_permutations(n, x.device)]  # (B, C, 24, n^3)
    return rotated.transpose(1, 2).reshape(b * N_CUBE_ROTATIONS, c, n, n, n)


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3), differentiable."""
    angle = torch.sqrt((rotvec * rotvec).sum(-1, keepdim=True) + 1e-12)
    axis = rotvec / angle
    kx, ky, kz = axis.unbind(-1)
    zero = torch.zeros_like(kx)
    k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).view(*rotvec.shape, 3)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + sin * k + (1 - cos) * (k @ k)


def _quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).view(*q.shape[:-1], 3, 3)


def _euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """R = Rz(c) Ry(b) Rx(a) for angles (..., 3) = (a, b, c)."""
    eye = torch.eye(3, dtype=angles.dtype)
    out = eye.expand(*angles.shape[:-1], 3, 3)
    for axis in range(3):
        v = torch.zeros_like(angles)
        v[..., axis] = angles[..., axis]
        out = rotvec_to_matrix(v) @ out
    return out


def random_rotation_matrices(n: int, generator: torch.Generator, sampling: RotationSampling = "quaternion") -> torch.Tensor:
    """(n, 3, 3) CPU float32 rotations: uniform on SO(3) (unit quaternions), or the
    original's Euler angles ~ U(0, 2π)^3 (``euler``, not uniform on SO(3))."""
    if sampling == "quaternion":
        q = torch.randn(n, 4, generator=generator)
        return _quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))
    return _euler_to_matrix(torch.rand(n, 3, generator=generator) * 2 * math.pi)


_REVERSE = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def affine_transform(
    x: torch.Tensor,
    rotation: torch.Tensor,
    translation: torch.Tensor | None = None,
    inverse: bool = False,
) -> torch.Tensor:
    """Move each object p -> R p + t (R (B,3,3), t (B,3) in normalised units, 2 = grid
    width) by trilinear resampling; ``inverse=True`` applies p -> R^T (p - t)."""
    rotation = rotation.to(x.dtype)
    t = torch.zeros(x.shape[0], 3, dtype=x.dtype, device=x.device) if translation is None else translation.to(x.dtype)
    if inverse:  # out[p] = x[R p + t]
        a, offset = rotation, t
    else:  # out[p] = x[R^T (p - t)]
        a = rotation.transpose(1, 2)
        offset = -(a @ t.unsqueeze(-1)).squeeze(-1)
    p = _REVERSE.to(device=x.device, dtype=x.dtype)  # index order (d0, d1, d2) <-> grid (x, y, z)
    theta = torch.cat([p @ a @ p, (offset @ p).unsqueeze(-1)], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
