"""The numpy voxeliser on shapes whose voxels are counted by hand (kaolin's conventions:
scale by the largest extent, centre, voxel = clamp(floor(p * R), 0, R - 1))."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.shapes3d import boxes_to_mesh
from trainables.data.voxelize import kaolin_available, voxelize_mesh


def _box(low, high):
    vertices, faces = boxes_to_mesh([(low, high)])
    return vertices, np.asarray(faces)


def test_unit_cube_fills_the_grid():
    v, f = _box((0, 0, 0), (1, 1, 1))
    surface = voxelize_mesh(v, f, 4, fill=False, backend="numpy")
    # every voxel with an index 0 or 3 on some axis: 4^3 - 2^3
    assert surface.sum() == 56 and not surface[1:3, 1:3, 1:3].any()
    assert voxelize_mesh(v, f, 4, fill=True, backend="numpy").all()


def test_axis_aligned_box_is_centred():
    # 2 x 1 x 1 box at R = 8: x spans [0, 1] -> voxels 0..7; y, z span [0.25, 0.75]
    # -> voxel units [2, 6] -> indices 2..6 (the upper face lies on a boundary: floor).
    v, f = _box((3, -1, 5), (5, 0, 6))
    solid = voxelize_mesh(v, f, 8, fill=True, backend="numpy")
    expected = np.zeros((8, 8, 8), dtype=bool)
    expected[0:8, 2:7, 2:7] = True
    np.testing.assert_array_equal(solid, expected)
    surface = voxelize_mesh(v, f, 8, fill=False, backend="numpy")
    assert surface.sum() == 8 * 5 * 5 - 6 * 3 * 3  # 146: the 6x3x3 core is empty
    assert not surface[1:7, 3:6, 3:6].any()


def test_corner_tetrahedron():
    # Vertices 0, e_x, e_y, e_z at R = 4: exactly the voxels whose lower corner lies in
    # the solid, i + j + k <= 4 (32 of them); the surface touches every one of them.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    i, j, k = np.indices((4, 4, 4))
    expected = (i + j + k) <= 4
    assert expected.sum() == 32
    np.testing.assert_array_equal(voxelize_mesh(v, f, 4, fill=False, backend="numpy"), expected)
    np.testing.assert_array_equal(voxelize_mesh(v, f, 4, fill=True, backend="numpy"), expected)


def test_polygon_faces_must_be_triangulated_first():
    with pytest.raises(ValueError, match="triangles"):
        voxelize_mesh(np.zeros((4, 3)), np.zeros((1, 4), dtype=np.int64), 4)


@pytest.mark.skipif(not kaolin_available(), reason="kaolin is not installed")
def test_numpy_backend_matches_kaolin():  # pragma: no cover - needs kaolin
    from trainables.data.shapes3d import generate_shape

    rng = np.random.default_rng(0)
    for name in ("chair", "stairs"):
        vertices, faces = boxes_to_mesh(generate_shape(name, rng))
        faces = np.asarray(faces)
        for resolution in (16, 32):
            np.testing.assert_array_equal(
                voxelize_mesh(vertices, faces, resolution, fill=False, backend="numpy"),
                voxelize_mesh(vertices, faces, resolution, fill=False, backend="kaolin"),
            )
