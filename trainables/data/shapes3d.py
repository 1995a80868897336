"""Seeded generator of labelled, orientation-asymmetric 3D shapes made of boxes.

Every class is built so that no proper rotation other than the identity maps a shape
onto itself (the 24 cube rotations of its voxel grid are 24 distinct grids), so a
"canonical orientation" is well defined, as for ModelNet's aligned CAD models:

  chair   seat on four legs with a back slab on one side
  lshape  two perpendicular bars of clearly different lengths
  tshape  a top bar with a stem attached off-centre
  stairs  three steps with a post on the lowest step's side

Shapes come out as triangle meshes (12 triangles or 6 quads per box) so that tests
can write them as OFF files in the ModelNet layout and read them back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainables.data.off import write_off

__all__ = [
    "SHAPE_CLASSES",
    "Box",
    "boxes_to_mesh",
    "generate_shape",
    "write_modelnet_tree",
]

Box = tuple[tuple[float, float, float], tuple[float, float, float]]  # (low corner, high corner)

# The 6 faces of a box as quads over its corners (corner bit 0 = x, 1 = y, 2 = z high),
# counter-clockwise seen from outside.
_BOX_QUADS = ((0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5))


def _chair(rng: np.random.Generator) -> list[Box]:
    w, d = rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1)
    h, t, leg = rng.uniform(0.7, 1.0), 0.15, 0.15
    back = rng.uniform(0.9, 1.3)
    boxes: list[Box] = [((0, 0, h), (w, d, h + t)), ((0, d - t, h + t), (w, d, h + t + back))]
    for x in (0.0, w - leg):
        for y in (0.0, d - leg):
            boxes.append(((x, y, 0.0), (x + leg, y + leg, h)))
    return boxes


def _lshape(rng: np.random.Generator) -> list[Box]:
    long_arm, short_arm = rng.uniform(1.6, 2.0), rng.uniform(0.7, 1.0)
    t = rng.uniform(0.35, 0.45)
    return [((0, 0, 0), (long_arm, t, t)), ((0, 0, t), (t, t, t + short_arm))]


def _tshape(rng: np.random.Generator) -> list[Box]:
    bar, stem, t = rng.uniform(1.6, 2.0), rng.uniform(1.0, 1.4), rng.uniform(0.3, 0.4)
    x0 = bar * 0.2
    return [((0, 0, stem), (bar, t, stem + t)), ((x0, 0, 0), (x0 + t, t, stem))]


def _stairs(rng: np.random.Generator) -> list[Box]:
    depth, rise, width = rng.uniform(0.45, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.8, 1.1)
    boxes: list[Box] = [((i * depth, 0, 0), ((i + 1) * depth, width, (i + 1) * rise)) for i in range(3)]
    post = 0.12
    boxes.append(((0, 0, rise), (post, post, 4.2 * rise)))
    return boxes


_GENERATORS: dict[str, Callable[[np.random.Generator], list[Box]]] = {
    "chair": _chair,
    "lshape": _lshape,
    "tshape": _tshape,
    "stairs": _stairs,
}
SHAPE_CLASSES: tuple[str, ...] = tuple(_GENERATORS)


def generate_shape(name: str, rng: np.random.Generator) -> list[Box]:
    """Boxes of one random shape of class ``name`` (dimensions drawn from ``rng``)."""
    try:
        return _GENERATORS[name](rng)
    except KeyError:
        raise ValueError(f"unknown shape class {name!r}; valid: {', '.join(SHAPE_CLASSES)}") from None


def boxes_to_mesh(boxes: list[Box], quads: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """Union of boxes as a mesh: vertices (8 per box) and faces (quads or triangles)."""
    vertices, faces = [], []
    for n, (low, high) in enumerate(boxes):
        corners = [(high[0] if c & 1 else low[0], high[1] if c & 2 else low[1], high[2] if c & 4 else low[2]) for c in range(8)]
        vertices.extend(corners)
        for a, b, c, d in _BOX_QUADS:
            a, b, c, d = (8 * n + i for i in (a, b, c, d))
            faces.extend([[a, b, c, d]] if quads else [[a, b, c], [a, c, d]])
    return np.asarray(vertices, dtype=np.float32), faces


def write_modelnet_tree(
    root: str | Path,
    n_train_per_class: int,
    n_test_per_class: int,
    seed: int = 0,
    classes: tuple[str, ...] = SHAPE_CLASSES,
) -> Path:
    """Write shapes as ``<root>/<class>/{train,test}/<class>_<nnnn>.off`` (ModelNet layout).

    Files alternate between ModelNet's glued header (``OFF8 6 0``) and the plain one, and
    between quad and triangle faces, so a loader test covers both.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    number = 0
    for split, count in (("train", n_train_per_class), ("test", n_test_per_class)):
        for name in classes:
            for _ in range(count):
                number += 1
                vertices, faces = boxes_to_mesh(generate_shape(name, rng), quads=number % 2 == 0)
                path = root / name / split / f"{name}_{number:04d}.off"
                write_off(path, vertices, faces, glued_header=number % 3 != 0)
    return root
