"""Seedable generator of simple-shape images (EXPERIMENTS.md 7, his ``make_shape_data.py``).

A *tile* is a ``tile_size`` x ``tile_size`` image with one shape on black:

  0 square, 1 circle, 2 rectangle (h = 2w), 3 ellipse (h = 2w), 4 right triangle (h = w)

Options as in the original: ``rand_size`` (height uniform over even values in
[tile/4, 3·tile/4], else tile/2), ``rand_loc`` (uniform top-left corner away from the
edges, else centred), ``rand_fill`` (grey level uniform 1-255, else 128),
``rand_outline`` (outline grey level uniform 1-255, else = fill). A *grid image* is
``grid_size`` x ``grid_size`` such tiles (his 8x8 grids of 32x32 tiles = 256x256).
``structured`` grids fix the tile type by row (``row % 5``) and vary its size and/or
location by row (``row % 4``: fixed, size, location, both), so that layout is global
information a hierarchical model can learn.

Rasterised with numpy at pixel centres instead of PIL (no drawing dependency; the
same shapes up to anti-aliasing-free boundary pixels). Image ``i`` of a dataset is
drawn from ``numpy.random.default_rng([seed, i])``: same seed -> identical data, and
the first k images do not depend on how many are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["N_SHAPE_TYPES", "SHAPE_NAMES", "ShapeOptions", "make_grid_image", "make_shape", "make_shapes"]

SHAPE_NAMES = ("square", "circle", "rectangle", "ellipse", "right_triangle")
N_SHAPE_TYPES = len(SHAPE_NAMES)
_DEFAULT_FILL = 128
_MIN_TILE = 8


@dataclass(frozen=True)
class ShapeOptions:
    """Which shape attributes are random (the flags of ``make_shape_data.py``)."""

    rand_size: bool = True
    rand_loc: bool = True
    rand_fill: bool = False
    rand_outline: bool = False


def _shape_box(
    rng: np.random.Generator, tile_size: int, shape_type: int, rand_size: bool, rand_loc: bool
) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the shape's bounding box, in pixels."""
    if rand_size:
        height = int(rng.integers(tile_size // 8, 3 * tile_size // 8 + 1)) * 2
    else:
        height = tile_size // 2
    width = height if shape_type in (0, 1, 4) else max(1, height // 2)
    if rand_loc:
        left = int(rng.integers(1, max(2, tile_size - width - 1)))
        top = int(rng.integers(1, max(2, tile_size - height - 1)))
    else:
        left, top = (tile_size - width) // 2, (tile_size - height) // 2
    return left, top, width, height


def _mask(tile_size: int, shape_type: int, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, width, height = box
    # Pixel centres in the box's unit coordinates: u, v in [0, 1] inside the box.
    coords = np.arange(tile_size, dtype=np.float64) + 0.5
    u = ((coords - left) / width)[None, :]
    v = ((coords - top) / height)[:, None]
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape_type in (0, 2):
        return inside
    if shape_type in (1, 3):
        return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1
    if shape_type == 4:  # right angle at the bottom-left corner, as in the original
        return inside & (v >= u)
    raise ValueError(f"shape_type must be in 0..{N_SHAPE_TYPES - 1}, got {shape_type}")


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def make_shape(
    rng: np.random.Generator,
    tile_size: int = 32,
    shape_type: int | None = None,
    options: ShapeOptions = ShapeOptions(),
) -> tuple[np.ndarray, int]:
    """One tile: (uint8 image (tile_size, tile_size), shape type)."""
    if tile_size < _MIN_TILE:
        raise ValueError(f"tile_size must be >= {_MIN_TILE}, got {tile_size}")
    if shape_type is None:
        shape_type = int(rng.integers(0, N_SHAPE_TYPES))
    box = _shape_box(rng, tile_size, shape_type, options.rand_size, options.rand_loc)
    fill = int(rng.integers(1, 256)) if options.rand_fill else _DEFAULT_FILL
    outline = int(rng.integers(1, 256)) if options.rand_outline else fill
    mask = _mask(tile_size, shape_type, box)
    image = np.zeros((tile_size, tile_size), dtype=np.uint8)
    image[mask] = fill
    image[_outline(mask)] = outline
    return image, shape_type


def make_grid_image(
    rng: np.random.Generator,
    tile_size: int = 32,
    grid_size: int = 8,
    options: ShapeOptions = ShapeOptions(),
    structured: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image (G·T, G·T), shape types (G, G)) of a grid of independent tiles."""
    size = grid_size * tile_size
    image = np.zeros((size, size), dtype=np.uint8)
    types = np.zeros((grid_size, grid_size), dtype=np.int64)
    for row in range(grid_size):
        for col in range(grid_size):
            if structured:
                mode = row % 4  # 0 fixed, 1 size varies, 2 location varies, 3 both
                tile_options = ShapeOptions(
                    rand_size=mode in (1, 3),
                    rand_loc=mode in (2, 3),
                    rand_fill=options.rand_fill,
                    rand_outline=options.rand_outline,
                )
                tile, kind = make_shape(rng, tile_size, row % N_SHAPE_TYPES, tile_options)
            else:
                tile, kind = make_shape(rng, tile_size, None, options)
            image[row * tile_size : (row + 1) * tile_size, col * tile_size : (col + 1) * tile_size] = tile
            types[row, col] = kind
    return image, types


def make_shapes(
    n_images: int,
    seed: int,
    *,
    tile_size: int = 32,
    grid_size: int = 8,
    options: ShapeOptions = ShapeOptions(),
    structured: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_images`` grid images as float32 (N, 1, G·T, G·T) in [0, 1], and types (N, G, G)."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    size = grid_size * tile_size
    images = np.zeros((n_images, 1, size, size), dtype=np.float32)
    types = np.zeros((n_images, grid_size, grid_size), dtype=np.int64)
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        image, kinds = make_grid_image(rng, tile_size, grid_size, options, structured)
        images[index, 0] = image / 255.0
        types[index] = kinds
    return images, types
