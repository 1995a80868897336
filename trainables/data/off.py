"""Reader and writer of the OFF mesh format, including ModelNet's header quirk.

Format: optional ``#`` comments and blank lines; the keyword ``OFF``; the counts
``n_vertices n_faces n_edges``; n_vertices lines ``x y z``; n_faces lines
``k i_1 ... i_k [colour]`` with 0-based indices. Many ModelNet files glue the counts
to the keyword (``OFF490 518 0``, no newline); the reader strips a leading ``OFF``
token wherever the counts start. Polygons (k > 3) are fan-triangulated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OffFormatError", "OffMesh", "parse_off", "read_off", "write_off"]


class OffFormatError(ValueError):
    """A file that is not valid OFF; the message names the file and the problem."""


@dataclass(frozen=True)
class OffMesh:
    """Vertices float32 (N, 3) and triangle faces int64 (M, 3)."""

    vertices: np.ndarray
    faces: np.ndarray


def _content_lines(text: str) -> list[list[str]]:
    """Token lists of the non-empty lines, ``#`` comments removed."""
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return [tokens for tokens in lines if tokens]


def parse_off(text: str, name: str = "<string>") -> OffMesh:
    """Parse OFF text line by line; ``name`` only appears in error messages."""
    lines = _content_lines(text)
    if not lines or not lines[0][0].upper().startswith("OFF"):
        raise OffFormatError(f"{name}: does not start with the OFF keyword")
    glued = lines[0][0][3:]  # "OFF490" -> "490" (ModelNet quirk); "" for a plain header
    counts = ([glued] if glued else []) + lines[0][1:]
    body = lines[1:]
    if not counts:  # the usual layout: counts on their own line
        if not body:
            raise OffFormatError(f"{name}: missing the vertex/face counts")
        counts, body = body[0], body[1:]
    try:
        n_vertices, n_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise OffFormatError(f"{name}: bad counts line {' '.join(counts)!r}") from None
    if len(body) < n_vertices + n_faces:
        raise OffFormatError(f"{name}: expected {n_vertices} vertex and {n_faces} face lines, got {len(body)} lines")
    try:
        vertices = np.asarray([line[:3] for line in body[:n_vertices]], dtype=np.float64)
    except ValueError as error:
        raise OffFormatError(f"{name}: bad vertex line ({error})") from None
    if vertices.shape != (n_vertices, 3):
        raise OffFormatError(f"{name}: every vertex line needs x y z")
    faces = _triangulate(body[n_vertices : n_vertices + n_faces], n_vertices, name)
    return OffMesh(vertices.astype(np.float32).reshape(n_vertices, 3), faces)


def _triangulate(face_lines: list[list[str]], n_vertices: int, name: str) -> np.ndarray:
    """Faces ``k i_1 .. i_k [colour]`` as triangles; a k-gon becomes a fan of k - 2."""
    triangles: list[tuple[int, int, int]] = []
    for line in face_lines:
        try:
            k = int(line[0])
            indices = [int(v) for v in line[1 : 1 + k]]
        except ValueError:
            raise OffFormatError(f"{name}: bad face line {' '.join(line)!r}") from None
        if k < 3 or len(indices) != k:
            raise OffFormatError(f"{name}: face line {' '.join(line)!r} has not k >= 3 indices")
        if min(indices) < 0 or max(indices) >= n_vertices:
            raise OffFormatError(f"{name}: face index out of range 0..{n_vertices - 1}")
        triangles.extend((indices[0], indices[i], indices[i + 1]) for i in range(1, k - 1))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def read_off(path: str | os.PathLike) -> OffMesh:
    """Read an OFF file (ModelNet header quirk, comments, colours and polygons handled)."""
    path = Path(path)
    return parse_off(path.read_text(encoding="ascii", errors="replace"), name=str(path))


def write_off(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray | list[list[int]],
    glued_header: bool = False,
    comment: str | None = None,
) -> Path:
    """Write an OFF file; ``glued_header`` writes ModelNet's ``OFF<n> <m> 0`` first line.

    ``faces`` may hold polygons of any size (a list of index lists).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    face_list = [list(map(int, face)) for face in faces]
    counts = f"{len(vertices)} {len(face_list)} 0"
    lines = [f"OFF{counts}"] if glued_header else ["OFF", counts]
    if comment:
        lines.insert(1, f"# {comment}")
    lines += [" ".join(f"{float(c):.9g}" for c in vertex) for vertex in vertices]
    lines += [" ".join(str(i) for i in [len(face)] + face) for face in face_list]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
