"""OFF reader: ModelNet's glued header, comments, colours, polygons; writer round trip."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.off import OffFormatError, parse_off, read_off, write_off

SQUARE_PYRAMID = """OFF5 2 0
0 0 0
1 0 0
1 1 0
0 1 0
0.5 0.5 1
4 0 1 2 3
3 0 1 4
"""


def test_modelnet_glued_header_and_quad_triangulation():
    mesh = parse_off(SQUARE_PYRAMID)
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape == (5, 3)
    assert mesh.faces.dtype == np.int64
    # The quad becomes the fan (0 1 2), (0 2 3); the triangle stays.
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]
    np.testing.assert_array_equal(mesh.vertices[4], [0.5, 0.5, 1.0])


def test_plain_header_comments_blank_lines_and_face_colours():
    text = """# made by hand
OFF
# counts follow

4 2 0
0 0 0   # a vertex comment
1 0 0
0 1 0
0 0 1
3 0 1 2 255 0 0
5 0 1 2 3 0
"""
    mesh = parse_off(text)
    assert mesh.vertices.shape == (4, 3)
    # the colour is ignored; the pentagon (with a repeated index) gives 3 fan triangles
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 1, 2], [0, 2, 3], [0, 3, 0]]


def test_glued_header_with_large_counts(tmp_path):
    vertices = np.random.default_rng(0).random((490, 3)).astype(np.float32)
    faces = [[i, i + 1, i + 2] for i in range(488)]
    path = write_off(tmp_path / "m.off", vertices, faces, glued_header=True)
    assert path.read_text().splitlines()[0] == "OFF490 488 0"
    mesh = read_off(path)
    np.testing.assert_array_equal(mesh.vertices, vertices)
    assert mesh.faces.tolist() == faces


@pytest.mark.parametrize(
    "text, message",
    [
        ("PLY\n3 1 0\n", "OFF keyword"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "expected 3 vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "k >= 3"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(text, message):
    with pytest.raises(OffFormatError, match=message):
        parse_off(text, name="bad.off")
