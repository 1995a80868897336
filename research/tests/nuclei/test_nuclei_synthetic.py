"""The generator: deterministic per seed, different across seeds, centres spaced, classes sized as designed."""

from __future__ import annotations

import numpy as np
from nuclei.synthetic import MIN_SPACING_PX, generate_patch, generate_patches


def test_same_seed_same_patches_other_seed_other_patches() -> None:
    a, b, c = generate_patches(3, 64, seed=1), generate_patches(3, 64, seed=1), generate_patches(3, 64, seed=2)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.centres, y.centres) and np.array_equal(x.labels, y.labels)
    assert not np.array_equal(a[0].image, c[0].image)
    assert not np.array_equal(a[0].image, a[1].image)


def test_images_are_float_rgb_in_unit_range_with_three_classes_annotated() -> None:
    patches = generate_patches(6, 96, seed=0)
    for patch in patches:
        assert patch.image.dtype == np.float32 and patch.image.shape == (96, 96, 3)
        assert 0.0 <= patch.image.min() and patch.image.max() <= 1.0
        assert patch.centres.shape == (len(patch.labels), 2)
        assert np.all((patch.centres >= 0) & (patch.centres < 96))
    assert set(np.concatenate([p.labels for p in patches]).tolist()) == {0, 1, 2}


def test_centres_keep_the_minimum_spacing() -> None:
    for seed in range(5):
        patch = generate_patch(np.random.default_rng(seed), 96)
        gaps = np.hypot(*(patch.centres[:, None, :] - patch.centres[None, :, :]).transpose(2, 0, 1)).astype(float)
        np.fill_diagonal(gaps, np.inf)
        assert gaps.min() >= MIN_SPACING_PX - 1  # centres are rounded to whole pixels


def test_classes_differ_in_size_as_designed() -> None:
    """The dark (stained) area around each centre: L < BE < ME on average."""
    areas: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for patch in generate_patches(10, 96, seed=3):
        dark = patch.image.mean(axis=2) < 0.6
        yy, xx = np.mgrid[0:96, 0:96]
        for (x, y), label in zip(patch.centres, patch.labels):
            areas[int(label)].append(int((dark & ((xx - x) ** 2 + (yy - y) ** 2 <= 64)).sum()))
    mean = {k: float(np.mean(v)) for k, v in areas.items()}
    assert mean[0] < mean[1] < mean[2], mean
