"""A seedable generator of H&E-like patches with annotated nucleus centres (the paper's data are private).

Each patch is float32 RGB in [0, 1] (H, W, 3): a noisy pink (eosin) stroma with purple (haematoxylin) nuclei of
three classes, told apart mainly by size, shape, texture and neighbourhood:

* lymphocyte (L): small (radius 2.5-3.2 px), round, dark and uniform, scattered anywhere;
* benign epithelial (BE): medium oval (semi-axes 4.5-5.5 x 3.0-3.8 px), smooth, mid-dark, outside tumour nests;
* malignant epithelial (ME): large and variable (radius 4.2-7.5 px), irregular outline, vesicular (pale core,
  dark rim, chromatin speckles of random strength), and always inside a tumour nest with other ME nuclei.

The small ME nuclei with faint texture look much like BE from the nucleus alone; their neighbours (a nest of
large irregular nuclei) give them away, so a tile that sees more context classifies better: the paper's
"accuracy rises with tile size" (EXPERIMENTS.md section 6).

Centres are at least ``min_spacing`` px apart and nuclei do not overlap (spacing >= r_i + r_j + 1). Patch ``i`` of
seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: deterministic per seed, different across seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "MIN_SPACING_PX", "Patch", "generate_patch", "generate_patches"]

CLASS_NAMES = ("L", "BE", "ME")  # label 0, 1, 2; the tile classifier's background is label 3
MIN_SPACING_PX = 8.0
_STROMA = np.array([0.93, 0.70, 0.82], dtype=np.float32)
_NEST_STROMA = np.array([0.82, 0.58, 0.80], dtype=np.float32)
_HAEMATOXYLIN = np.array([0.30, 0.16, 0.50], dtype=np.float32)


@dataclass(frozen=True)
class Patch:
    """One annotated patch: ``image`` float32 (H, W, 3) in [0, 1]; ``centres`` int64 (N, 2) as (x, y) pixel
    coordinates; ``labels`` int64 (N,) in 0..2 (CLASS_NAMES); ``name`` identifies it (file name for real data)."""

    image: np.ndarray
    centres: np.ndarray
    labels: np.ndarray
    name: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class _Nucleus:
    x: float
    y: float
    label: int
    radius: float  # the bounding radius, for spacing


def generate_patches(n: int, size: int = 96, seed: int = 0, min_spacing: float = MIN_SPACING_PX) -> list[Patch]:
    """``n`` patches of ``size`` x ``size`` px; patch i depends only on (seed, i)."""
    return [
        generate_patch(np.random.default_rng([seed, i]), size, min_spacing, name=f"synthetic_{seed}_{i:04d}") for i in range(n)
    ]


def generate_patch(rng: np.random.Generator, size: int = 96, min_spacing: float = MIN_SPACING_PX, name: str = "") -> Patch:
    image = _stroma(rng, size)
    nests = _nest_centres(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    nest_radius = 0.22 * size
    in_nest = np.zeros((size, size), dtype=bool)
    for cx, cy in nests:
        in_nest |= (xx - cx) ** 2 + (yy - cy) ** 2 < nest_radius**2
    image[in_nest] = image[in_nest] * (_NEST_STROMA / _STROMA)  # a slightly denser stroma inside nests
    scale = (size / 96.0) ** 2
    nuclei: list[_Nucleus] = []
    wanted = [(2, int(rng.integers(5, 9) * scale)), (1, int(rng.integers(4, 8) * scale)), (0, int(rng.integers(3, 7) * scale))]
    for label, count in wanted:
        for _ in range(max(1, count)):
            nucleus = _place(rng, label, size, nests, nest_radius, nuclei, min_spacing)
            if nucleus is not None:
                nuclei.append(nucleus)
    for nucleus in nuclei:
        _draw(rng, image, nucleus, xx, yy)
    image += rng.normal(0.0, 0.07, image.shape).astype(np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    centres = np.array([[round(n.x), round(n.y)] for n in nuclei], dtype=np.int64).reshape(-1, 2)
    labels = np.array([n.label for n in nuclei], dtype=np.int64)
    return Patch(image.astype(np.float32), centres, labels, name)


def _stroma(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pink with smooth low-frequency intensity variation (an 8x8 grid upsampled bilinearly)."""
    coarse = rng.normal(0.0, 0.05, (8, 8)).astype(np.float32)
    grid = np.linspace(0, 7, size, dtype=np.float32)
    i0 = np.floor(grid).astype(int).clip(0, 6)
    t = grid - i0
    rows = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]
    smooth = rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]
    tint = rng.normal(0.0, 0.02, 3).astype(np.float32)
    return (_STROMA + tint)[None, None, :] * (1.0 + smooth[:, :, None])


def _nest_centres(rng: np.random.Generator, size: int) -> list[tuple[float, float]]:
    count = 1 if size < 80 else int(rng.integers(1, 3))
    margin = 0.2 * size
    return [(float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin))) for _ in range(count)]


def _radius(rng: np.random.Generator, label: int) -> float:
    if label == 0:
        return float(rng.uniform(2.5, 3.2))
    if label == 1:
        return float(rng.uniform(4.5, 5.5))
    return float(rng.uniform(4.0, 7.5))


def _place(
    rng: np.random.Generator,
    label: int,
    size: int,
    nests: list[tuple[float, float]],
    nest_radius: float,
    placed: list[_Nucleus],
    min_spacing: float,
) -> _Nucleus | None:
    """Rejection sampling: ME inside a nest, BE outside every nest, L anywhere; None after 200 tries."""
    radius = _radius(rng, label)
    for _ in range(200):
        if label == 2:
            cx, cy = nests[int(rng.integers(len(nests)))]
            angle, dist = rng.uniform(0, 2 * np.pi), nest_radius * np.sqrt(rng.uniform(0, 1))
            x, y = cx + dist * np.cos(angle), cy + dist * np.sin(angle)
        else:
            x, y = rng.uniform(2, size - 3), rng.uniform(2, size - 3)
        if not (2 <= x <= size - 3 and 2 <= y <= size - 3):
            continue
        if label == 1 and any((x - cx) ** 2 + (y - cy) ** 2 < (nest_radius + 6) ** 2 for cx, cy in nests):
            continue
        if all(np.hypot(x - n.x, y - n.y) >= max(min_spacing, radius + n.radius + 1) for n in placed):
            return _Nucleus(float(x), float(y), label, radius)
    return None


def _draw(rng: np.random.Generator, image: np.ndarray, n: _Nucleus, xx: np.ndarray, yy: np.ndarray) -> None:
    """Blend one nucleus into ``image`` in place: a soft-edged shape, its stain density by class."""
    size = image.shape[0]
    pad = int(np.ceil(n.radius)) + 3
    y0, y1 = max(0, int(n.y) - pad), min(size, int(n.y) + pad + 1)
    x0, x1 = max(0, int(n.x) - pad), min(size, int(n.x) + pad + 1)
    dx, dy = xx[y0:y1, x0:x1] - n.x, yy[y0:y1, x0:x1] - n.y
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dx, dy)
    if n.label == 0:  # round
        boundary = np.full_like(dist, n.radius)
    elif n.label == 1:  # smooth oval, random orientation
        phi = rng.uniform(0, np.pi)
        minor = n.radius * rng.uniform(0.65, 0.9)
        c, s = np.cos(theta - phi), np.sin(theta - phi)
        boundary = 1.0 / np.sqrt((c / n.radius) ** 2 + (s / minor) ** 2)
    else:  # irregular (a few random harmonics of the outline) and vesicular, both by a random degree
        texture = rng.uniform(0.0, 1.0) ** 2  # the faint ones look benign on their own
        boundary = np.full_like(dist, n.radius)
        for k in (2, 3, 5):
            boundary *= 1.0 + texture * rng.uniform(0.04, 0.12) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        boundary = np.minimum(boundary, n.radius)
    inside = 1.0 / (1.0 + np.exp(-(boundary - dist) / 0.5))  # soft edge
    rel = np.clip(dist / np.maximum(boundary, 1e-3), 0.0, 1.5)
    if n.label == 0:
        density = rng.uniform(0.85, 0.95) + rng.normal(0, 0.02, dist.shape)
    elif n.label == 1:
        density = rng.uniform(0.55, 0.68) + rng.normal(0, 0.03, dist.shape)
    else:
        rim = np.exp(-(((rel - 0.85) / 0.15) ** 2))
        speckle = (rng.uniform(0, 1, dist.shape) < 0.12) * rng.uniform(0.2, 0.4)
        density = (
            rng.uniform(0.55, 0.65) + texture * (0.25 * rim - 0.18 * (rel < 0.6) + speckle) + rng.normal(0, 0.05, dist.shape)
        )
    alpha = (np.clip(density, 0.0, 1.0) * inside).astype(np.float32)[:, :, None]
    region = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = region * (1 - alpha) + _HAEMATOXYLIN[None, None, :] * alpha
