"""Tiles zero-padded at the border, background tiles far from nuclei, the split by patch, the augmentation,
and the real-data folder: a written synthetic dataset round-trips; a malformed one is one clear line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from nuclei.data import (
    ANNOTATIONS_FILE,
    BACKGROUND,
    AnnotationError,
    augment,
    background_centres,
    extract_tiles,
    load_folder,
    split_patches,
    tiles_from_patches,
    write_folder,
)
from nuclei.synthetic import Patch, generate_patches


def _ramp(height: int = 10, width: int = 12) -> np.ndarray:
    return (np.arange(height * width * 3, dtype=np.float32).reshape(height, width, 3) + 1) / 1000


def test_tiles_are_centred_and_zero_padded_at_the_border() -> None:
    image = _ramp()
    tiles = extract_tiles(image, np.array([[5, 4], [0, 0], [11, 9]]), size=6)
    assert tiles.shape == (3, 3, 6, 6)
    # rows y - 3 .. y + 2, columns x - 3 .. x + 2
    assert np.array_equal(tiles[0], image[1:7, 2:8].transpose(2, 0, 1))
    assert np.all(tiles[1][:, :3, :] == 0) and np.all(tiles[1][:, :, :3] == 0)
    assert np.array_equal(tiles[1][:, 3:, 3:], image[0:3, 0:3].transpose(2, 0, 1))
    assert np.all(tiles[2][:, 4:, :] == 0) and np.all(tiles[2][:, :, 4:] == 0)
    assert np.array_equal(tiles[2][:, :4, :4], image[6:10, 8:12].transpose(2, 0, 1))
    with_margin = extract_tiles(image, np.array([[5, 4]]), size=6, margin=1)
    assert np.array_equal(with_margin[0, :, 1:-1, 1:-1], tiles[0])


@pytest.mark.parametrize("distance", [5.0, 10.0])
def test_background_tiles_keep_their_distance_from_every_nucleus(distance: float) -> None:
    patch = generate_patches(1, 96, seed=4)[0]
    centres = background_centres(patch, 50, distance, np.random.default_rng(0))
    assert len(centres) == 50 and len({tuple(c) for c in centres.tolist()}) == 50
    gaps = np.hypot(*(centres[:, None, :] - patch.centres[None, :, :]).transpose(2, 0, 1))
    assert gaps.min() >= distance
    tiles = tiles_from_patches([patch], 16, 7, distance, seed=0)
    assert len(tiles) == len(patch.labels) + 7 and (tiles.y == BACKGROUND).sum() == 7
    assert tiles.x.shape[1:] == (3, 16, 16)


def test_the_split_is_by_patch_60_15_25() -> None:
    train, val, test = split_patches(20, (0.6, 0.15), seed=3)
    assert (len(train), len(val), len(test)) == (12, 3, 5)
    assert sorted(train + val + test) == list(range(20))
    assert split_patches(20, (0.6, 0.15), seed=3) == (train, val, test) != split_patches(20, (0.6, 0.15), seed=4)
    assert all(len(s) >= 1 for s in split_patches(3))


def test_augmentation_crops_within_the_margin_and_keeps_pixels() -> None:
    patch = generate_patches(1, 64, seed=0)[0]
    tiles = tiles_from_patches([patch], 14, 3, 10.0, seed=0, margin=2)
    out = augment(tiles, torch.arange(len(tiles)), torch.Generator().manual_seed(0))
    assert out.shape == (len(tiles), 3, 14, 14)
    again = augment(tiles, torch.arange(len(tiles)), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # no shift/rotation/flip drawn would give the centred tile: each output is one of the 5x5x8 views
    x = tiles.x[0]
    views = [
        torch.rot90(v, k, (-2, -1))
        for dy in range(5)
        for dx in range(5)
        for f in (False, True)
        for k in range(4)
        for v in [(x[:, dy : dy + 14, dx : dx + 14].flip(-1) if f else x[:, dy : dy + 14, dx : dx + 14])]
    ]
    assert any(torch.equal(out[0], v) for v in views)


def test_a_written_synthetic_dataset_round_trips(tmp_path: Path) -> None:
    patches = generate_patches(3, 48, seed=7)
    write_folder(patches, tmp_path)
    header = (tmp_path / ANNOTATIONS_FILE).read_text().splitlines()[0]
    assert header == "image,x,y,label"
    loaded = load_folder(tmp_path)
    assert [p.name for p in loaded] == [p.name for p in patches]
    for a, b in zip(patches, loaded):
        assert np.array_equal(a.centres, b.centres) and np.array_equal(a.labels, b.labels)
        assert np.abs(a.image - b.image).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG


def test_long_label_names_are_accepted(tmp_path: Path) -> None:
    write_folder(generate_patches(1, 32, seed=0), tmp_path)
    table = tmp_path / ANNOTATIONS_FILE
    long = {"L": "Lymphocyte", "BE": "benign", "ME": "MALIGNANT"}
    rows = list(csv.reader(table.open()))
    rows[1:] = [[r[0], r[1], r[2], long[r[3]]] for r in rows[1:]]
    csv.writer(table.open("w", newline="")).writerows(rows)
    assert np.array_equal(load_folder(tmp_path)[0].labels, generate_patches(1, 32, seed=0)[0].labels)


def _edit(folder: Path, row: int, column: str, value: str) -> None:
    table = folder / ANNOTATIONS_FILE
    rows = list(csv.DictReader(table.open()))
    if column == "drop":
        fields = [f for f in rows[0] if f != value]
        rows = [{k: r[k] for k in fields} for r in rows]
    else:
        fields = list(rows[0])
        rows[row - 2][column] = value
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    "edit, says",
    [
        (("drop", 0, "label"), ["row 1", "missing column(s) label", "fix:"]),
        (("label", 3, "tumour"), ["row 3", "unknown label 'tumour'", "fix: use one of L, BE, ME"]),
        (("x", 2, "500"), ["row 2", "centre (500,", "is outside", "fix:"]),
        (("image", 4, "nowhere.png"), ["row 4", "image file 'nowhere.png' not found", "fix:"]),
        (("y", 2, "abc"), ["row 2", "not numbers", "fix:"]),
    ],
)
def test_a_malformed_folder_is_one_line_naming_file_row_and_fix(tmp_path: Path, edit: tuple, says: list[str]) -> None:
    write_folder(generate_patches(2, 48, seed=1), tmp_path)
    column, row, value = edit
    if column == "drop":
        _edit(tmp_path, 0, "drop", value)
    else:
        _edit(tmp_path, row, column, value)
    with pytest.raises(AnnotationError) as raised:
        load_folder(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and ANNOTATIONS_FILE in message and isinstance(raised.value, ValueError)
    for word in says:
        assert word in message, message


def test_a_missing_table_names_the_format(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="image,x,y,label"):
        load_folder(tmp_path)


def test_patch_dimensions() -> None:
    patch = Patch(np.zeros((5, 7, 3), np.float32), np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    assert (patch.height, patch.width) == (5, 7)
