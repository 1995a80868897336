"""The 24 cube rotations: a proper group, and their action on voxel grids."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from trainables.avae3d.rotations import (
    affine_transform,
    all_cube_rotations,
    composition_table,
    cube_rotation_matrices,
    rotate_cube,
)


def _keys(matrices):
    return [tuple(m.flatten().tolist()) for m in matrices]


def test_24_distinct_proper_rotations_closed_under_composition():
    m = cube_rotation_matrices()
    assert m.shape == (24, 3, 3) and m.dtype == torch.int64
    assert torch.equal(m[0], torch.eye(3, dtype=torch.int64))
    assert len(set(_keys(m))) == 24
    assert torch.all(torch.linalg.det(m.double()).round() == 1)
    assert torch.equal(m @ m.transpose(1, 2), torch.eye(3, dtype=torch.int64).expand(24, 3, 3))
    keys = set(_keys(m))
    table = composition_table()
    for a, b in itertools.product(range(24), repeat=2):
        product = m[a] @ m[b]
        assert tuple(product.flatten().tolist()) in keys
        assert torch.equal(m[table[a, b]], product)
    # every element has an inverse in the table
    assert all((table[a] == 0).sum() == 1 for a in range(24))


def test_grid_action_moves_each_voxel_to_the_matrix_image():
    n = 5  # odd: the centre voxel is fixed; centred coordinates are integers
    m = cube_rotation_matrices()
    rng = np.random.default_rng(0)
    points = rng.integers(0, n, size=(6, 3))
    for r in range(24):
        for i, j, k in points:
            x = torch.zeros(1, 1, n, n, n)
            x[0, 0, i, j, k] = 1
            centred = torch.tensor([i, j, k]) - (n - 1) // 2
            target = m[r] @ centred + (n - 1) // 2
            rotated = rotate_cube(x, r)
            assert rotated.sum() == 1 and rotated[0, 0, target[0], target[1], target[2]] == 1


def test_quarter_turns_are_rot90_and_batched_forms_agree():
    x = torch.rand(3, 2, 6, 6, 6)
    m = cube_rotation_matrices()
    rot90_images = {tuple(torch.rot90(x, 1, dims).flatten().tolist()) for dims in [(2, 3), (3, 4), (4, 2)]}
    ours = {tuple(rotate_cube(x, r).flatten().tolist()) for r in range(24)}
    assert rot90_images <= ours
    every = all_cube_rotations(x).view(3, 24, 2, 6, 6, 6)
    index = torch.tensor([5, 0, 17])
    per_sample = rotate_cube(x, index)
    for b in range(3):
        assert torch.equal(every[b, index[b]], per_sample[b])
        assert torch.equal(every[b, 7], rotate_cube(x[b : b + 1], 7)[0])
    # resampling with a cube matrix reproduces the exact permutation
    for r in (1, 9, 23):
        resampled = affine_transform(x, m[r].float().expand(3, 3, 3))
        assert torch.allclose(resampled, rotate_cube(x, r), atol=1e-5)
        back = affine_transform(resampled, m[r].float().expand(3, 3, 3), inverse=True)
        assert torch.allclose(back, x, atol=1e-5)


def test_synthetic_shapes_are_orientation_asymmetric():
    from trainables.avae3d.data import synthetic_voxels

    voxels, labels = synthetic_voxels(3, 16, seed=0)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]
    grids = all_cube_rotations(torch.from_numpy(voxels).float().unsqueeze(1)).view(len(voxels), 24, -1)
    for rotated in grids:
        assert len({tuple(g.tolist()) for g in rotated}) == 24
