"""Patches in, tiles out: the real-data folder format, the patch split, and the tile extraction.

Real data is a folder of PNG patches plus ``annotations.csv`` with the header ``image,x,y,label``: ``image`` a
file name relative to the folder, ``x``/``y`` the nucleus centre in pixels (column, row; 0-based), ``label``
one of L/BE/ME or lymphocyte/benign/malignant (any case). :func:`write_folder` writes a synthetic dataset in
that format (see it to learn the format); :func:`load_folder` reads it, and any problem is one
:class:`AnnotationError` line naming the file, the row and the fix.

Tiles are fixed-size crops centred on each annotation, zero-padded beyond the patch border (as the paper's),
plus background tiles centred on pixels at least ``background_distance`` px from every nucleus: a 4-class
problem, labels 0..2 = L/BE/ME and 3 = background. The split is by PATCH (60/15/25 % by default), so no
patch gives tiles to two splits. Training tiles keep a ``margin`` of real context on every side for the
random-translation augmentation (:func:`augment`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nuclei.synthetic import CLASS_NAMES, Patch, generate_patches

__all__ = [
    "ANNOTATIONS_FILE",
    "BACKGROUND",
    "AnnotationError",
    "TileSet",
    "augment",
    "background_centres",
    "extract_tiles",
    "load_folder",
    "load_patches",
    "split_patches",
    "tiles_from_patches",
    "write_folder",
]

ANNOTATIONS_FILE = "annotations.csv"
BACKGROUND = 3
_COLUMNS = ("image", "x", "y", "label")
_LABELS = {"l": 0, "lymphocyte": 0, "be": 1, "benign": 1, "me": 2, "malignant": 2}


class AnnotationError(ValueError):
    """A real-data folder that cannot be read: the message is one line naming the file, the row and the fix."""


# ----------------------------------------------------------------- the folder format
def write_folder(patches: list[Patch], root: str | Path) -> Path:
    """Each patch as ``<name>.png`` (8-bit RGB) and every centre as a row of ``annotations.csv``."""
    from PIL import Image

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ANNOTATIONS_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for i, patch in enumerate(patches):
            file = f"{patch.name or f'patch_{i:04d}'}.png"
            Image.fromarray(np.round(patch.image * 255).astype(np.uint8), "RGB").save(folder / file)
            for (x, y), label in zip(patch.centres, patch.labels):
                writer.writerow([file, int(x), int(y), CLASS_NAMES[int(label)]])
    return folder


def load_folder(root: str | Path) -> list[Patch]:
    """The patches named in ``<root>/annotations.csv``, in order of first mention, as float32 RGB in [0, 1]."""
    from PIL import Image

    folder = Path(root)
    table = folder / ANNOTATIONS_FILE
    if not table.is_file():
        raise AnnotationError(f"{table}: not found; fix: put the centres in {ANNOTATIONS_FILE} with header {','.join(_COLUMNS)}")
    rows: dict[str, list[tuple[int, int, int, int]]] = {}  # image -> (x, y, label, row number)
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(
                f"{table} row 1: missing column(s) {', '.join(missing)}; fix: the header must be {','.join(_COLUMNS)}"
            )
        for number, row in enumerate(reader, start=2):
            where = f"{table} row {number}"
            label = _LABELS.get((row["label"] or "").strip().lower())
            if label is None:
                raise AnnotationError(
                    f"{where}: unknown label {row['label']!r}; fix: use one of L, BE, ME (or lymphocyte, benign, malignant)"
                )
            try:
                x, y = round(float(row["x"])), round(float(row["y"]))
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{where}: x={row['x']!r}, y={row['y']!r} are not numbers; fix: pixel coordinates"
                ) from None
            rows.setdefault((row["image"] or "").strip(), []).append((x, y, label, number))
    patches = []
    for file, centres in rows.items():
        path = folder / file
        if not file or not path.is_file():
            raise AnnotationError(
                f"{table} row {centres[0][3]}: image file {file!r} not found in {folder}; fix: add it or drop its rows"
            )
        try:
            with Image.open(path) as opened:
                image = np.asarray(opened.convert("RGB"), dtype=np.float32) / 255.0
        except OSError as error:
            raise AnnotationError(f"{path}: cannot be read as an image ({error}); fix: save it as an RGB PNG") from None
        height, width = image.shape[:2]
        for x, y, _, number in centres:
            if not (0 <= x < width and 0 <= y < height):
                raise AnnotationError(
                    f"{table} row {number}: centre ({x}, {y}) is outside {file} ({width}x{height}); fix: x is the column in [0, {width}), y the row in [0, {height})"
                )
        array = np.array(centres, dtype=np.int64).reshape(-1, 4)
        patches.append(Patch(image, array[:, :2].copy(), array[:, 2].copy(), Path(file).stem))
    if not patches:
        raise AnnotationError(f"{table}: no annotated centres; fix: add rows image,x,y,label")
    return patches


def load_patches(source: str, data_root: str | None, n_patches: int, patch_size: int, data_seed: int) -> list[Patch]:
    """The patches of a trial: generated (``synthetic``) or read from ``data_root`` (``folder``); both then go
    through the same split and tile extraction."""
    if source == "synthetic":
        return generate_patches(n_patches, patch_size, data_seed)
    return load_folder(str(data_root))


# ----------------------------------------------------------------- split and tiles
def split_patches(n: int, fractions: tuple[float, float] = (0.6, 0.15), seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Patch indices for train / val / test (the rest), shuffled by ``seed``; each split gets >= 1 patch when n >= 3."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_train = max(1, int(round(n * fractions[0])))
    n_val = max(1, int(round(n * fractions[1])))
    n_train = min(n_train, max(1, n - n_val - 1))
    return sorted(order[:n_train]), sorted(order[n_train : n_train + n_val]), sorted(order[n_train + n_val :])


def background_centres(patch: Patch, count: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct (x, y) pixels at least ``min_distance`` px from every annotated centre."""
    yy, xx = np.mgrid[0 : patch.height, 0 : patch.width]
    far = np.ones((patch.height, patch.width), dtype=bool)
    for x, y in patch.centres:
        far &= (xx - x) ** 2 + (yy - y) ** 2 >= min_distance**2
    candidates = np.flatnonzero(far)
    if len(candidates) == 0 or count <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    chosen = rng.choice(candidates, size=min(count, len(candidates)), replace=False)
    return np.stack([chosen % patch.width, chosen // patch.width], axis=1).astype(np.int64)


def extract_tiles(image: np.ndarray, centres: np.ndarray, size: int, margin: int = 0) -> np.ndarray:
    """(N, 3, size + 2 margin, size + 2 margin) float32 crops of an (H, W, 3) image, each centred on (x, y):
    rows y - size//2 - margin .. (the dense inference's alignment, nuclei.network), zeros beyond the border."""
    full = size + 2 * margin
    before = size // 2 + margin
    padded = np.pad(image, ((full, full), (full, full), (0, 0)))
    tiles = np.zeros((len(centres), full, full, 3), dtype=np.float32)
    for i, (x, y) in enumerate(centres):
        top, left = int(y) - before + full, int(x) - before + full
        tiles[i] = padded[top : top + full, left : left + full]
    return np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class TileSet:
    """Tiles (N, 3, T + 2 margin, T + 2 margin) and labels (N,) in 0..3, as tensors."""

    x: torch.Tensor
    y: torch.Tensor
    margin: int

    def to(self, device: torch.device) -> TileSet:
        return TileSet(self.x.to(device), self.y.to(device), self.margin)

    def centred(self) -> torch.Tensor:
        """The tiles without their margin (what the classifier sees at evaluation)."""
        m = self.margin
        return self.x if m == 0 else self.x[:, :, m:-m, m:-m]

    def __len__(self) -> int:
        return len(self.y)


def tiles_from_patches(
    patches: list[Patch], size: int, background_per_patch: int, background_distance: float, seed: int, margin: int = 0
) -> TileSet:
    """Every annotation's tile and ``background_per_patch`` background tiles per patch (drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for patch in patches:
        background = background_centres(patch, background_per_patch, background_distance, rng)
        centres = np.concatenate([patch.centres.reshape(-1, 2), background])
        xs.append(extract_tiles(patch.image, centres, size, margin))
        ys.append(np.concatenate([patch.labels, np.full(len(background), BACKGROUND, dtype=np.int64)]))
    x = np.concatenate(xs) if xs else np.zeros((0, 3, size + 2 * margin, size + 2 * margin), dtype=np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64)
    return TileSet(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), margin)


def augment(tiles: TileSet, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The tiles ``index`` randomly translated by up to ``margin`` px (a crop of the margin), rotated by a
    multiple of 90 degrees and flipped; draws come from ``generator`` on the CPU."""
    x = tiles.x[index]
    n, m = len(index), tiles.margin
    size = x.shape[-1] - 2 * m
    dy = torch.randint(0, 2 * m + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * m + 1, (n,), generator=generator)
    turns = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(size)).to(x.device)
    cols = (dx[:, None] + torch.arange(size)).to(x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    out = torch.where(flip.to(x.device)[:, None, None, None], out.flip(-1), out)
    for k in (1, 2, 3):
        chosen = (turns == k).to(x.device)
        out = torch.where(chosen[:, None, None, None], torch.rot90(out, k, (-2, -1)), out)
    return out.contiguous()
