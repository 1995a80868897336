"""ModelNet loader round trip: synthetic shapes written as OFF files in the ModelNet
layout, read back, voxelised, cached; and the s3:// root through moto's server."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data import modelnet
from trainables.data.modelnet import load_modelnet_voxels, resolve_root
from trainables.data.off import read_off
from trainables.data.shapes3d import SHAPE_CLASSES, write_modelnet_tree
from trainables.data.voxelize import voxelize_mesh


@pytest.fixture
def tree(tmp_path):
    return write_modelnet_tree(tmp_path / "ModelNetSynth", 2, 1, seed=3)


def test_round_trip_and_cache_hit(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    data = load_modelnet_voxels(tree, "train", 8, cache_dir=cache)
    assert data.classes == tuple(sorted(SHAPE_CLASSES))
    assert data.voxels.shape == (8, 8, 8, 8) and data.voxels.dtype == bool
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    first = tree / data.classes[0] / "train" / data.names[0]
    mesh = read_off(first)
    np.testing.assert_array_equal(data.voxels[0], voxelize_mesh(mesh.vertices, mesh.faces, 8))
    assert len(list(cache.glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("voxelised again instead of reading the cache")

    monkeypatch.setattr(modelnet, "_voxelize_file", boom)
    again = load_modelnet_voxels(tree, "train", 8, cache_dir=cache)
    np.testing.assert_array_equal(again.voxels, data.voxels)
    assert again.names == data.names
    # a new file changes the file-list hash: the cache is not used
    (tree / "chair" / "train" / "extra.off").write_bytes(first.read_bytes())
    with pytest.raises(AssertionError, match="voxelised again"):
        load_modelnet_voxels(tree, "train", 8, cache_dir=cache)


def test_class_subset_and_missing_split(tree, tmp_path):
    data = load_modelnet_voxels(tree, "test", 8, classes=["stairs", "chair"], cache_dir=tmp_path)
    assert data.classes == ("stairs", "chair") and data.labels.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match="sofa"):
        load_modelnet_voxels(tree, "test", 8, classes=["sofa"], cache_dir=tmp_path)


def test_s3_root_is_mirrored_through_boto3(s3, tree, tmp_path):
    s3.create_bucket(Bucket="shapes")
    files = sorted(p for p in tree.rglob("*.off"))
    for path in files:
        s3.upload_file(str(path), "shapes", f"mn/{path.relative_to(tree).as_posix()}")
    local = resolve_root("s3://shapes/mn", tmp_path / "s3cache")
    assert sorted(p.relative_to(local) for p in local.rglob("*.off")) == [p.relative_to(tree) for p in files]
    data = load_modelnet_voxels(local, "test", 8, cache_dir=tmp_path / "vox")
    assert data.voxels.shape[0] == len(SHAPE_CLASSES)
