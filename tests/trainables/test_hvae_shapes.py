"""The seedable shapes generator (trainables.data.shapes2d)."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.shapes2d import ShapeOptions, make_grid_image, make_shape, make_shapes


def test_same_seed_same_images_and_prefix_stable():
    a, types_a = make_shapes(6, seed=3, tile_size=16, grid_size=3)
    b, types_b = make_shapes(6, seed=3, tile_size=16, grid_size=3)
    assert np.array_equal(a, b) and np.array_equal(types_a, types_b)
    first, _ = make_shapes(2, seed=3, tile_size=16, grid_size=3)
    assert np.array_equal(first, a[:2])  # image i does not depend on how many are made
    other, _ = make_shapes(6, seed=4, tile_size=16, grid_size=3)
    assert not np.array_equal(a, other)


def test_shapes_dtype_range_and_layout():
    x, types = make_shapes(3, seed=0, tile_size=16, grid_size=2)
    assert x.shape == (3, 1, 32, 32) and x.dtype == np.float32
    assert types.shape == (3, 2, 2) and set(np.unique(types)) <= set(range(5))
    assert x.min() == 0.0 and 0 < x.max() <= 1.0
    for tile in (x[0, 0, :16, :16], x[0, 0, 16:, 16:]):
        assert tile.max() > 0  # every tile holds a shape


@pytest.mark.parametrize("shape_type, area_fraction", [(0, 1.0), (1, np.pi / 4), (4, 0.5)])
def test_fixed_size_centred_shapes(shape_type, area_fraction):
    options = ShapeOptions(rand_size=False, rand_loc=False)
    image, kind = make_shape(np.random.default_rng(0), 32, shape_type, options)
    assert kind == shape_type
    filled = image > 0
    assert set(np.unique(image)) == {0, 128}
    # 16x16 box centred in the 32x32 tile; area close to the ideal shape's.
    rows, cols = np.nonzero(filled)
    assert rows.min() == 8 and rows.max() == 23 and cols.min() == 8 and cols.max() == 23
    assert filled.sum() == pytest.approx(area_fraction * 256, rel=0.12)


def test_rectangles_are_twice_as_high_as_wide():
    options = ShapeOptions(rand_size=False, rand_loc=False)
    image, _ = make_shape(np.random.default_rng(0), 32, 2, options)
    rows, cols = np.nonzero(image)
    assert np.ptp(rows) + 1 == 16 and np.ptp(cols) + 1 == 8


def test_outline_and_random_fill():
    options = ShapeOptions(rand_fill=True, rand_outline=True)
    image, _ = make_shape(np.random.default_rng(5), 32, 0, options)
    assert len(set(np.unique(image)) - {0}) in (1, 2)  # fill and outline grey levels


def test_structured_grid_fixes_type_by_row():
    _, types = make_grid_image(np.random.default_rng(0), 16, 6, structured=True)
    assert all((types[row] == row % 5).all() for row in range(6))
