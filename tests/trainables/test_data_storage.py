"""resolve_data_root: local paths, and s3:// through boto3 against moto's HTTP server."""

from __future__ import annotations

import pytest

from trainables.data.storage import DataRootError, resolve_data_root, sync_s3_prefix


def test_local_root_is_returned_as_is(tmp_path):
    assert resolve_data_root(str(tmp_path), tmp_path / "cache") == tmp_path
    with pytest.raises(DataRootError, match="no such folder"):
        resolve_data_root(str(tmp_path / "missing"), tmp_path / "cache")
    with pytest.raises(DataRootError, match="unsupported scheme"):
        resolve_data_root("gs://bucket/x", tmp_path / "cache")


def test_s3_root_downloads_only_missing_or_changed_objects(s3, tmp_path):
    s3.put_object(Bucket="data", Key="mnist/train-images-idx3-ubyte.gz", Body=b"images-v1")
    s3.put_object(Bucket="data", Key="mnist/sub/labels.gz", Body=b"labels")
    s3.put_object(Bucket="data", Key="other/ignored", Body=b"x")
    cache = tmp_path / "cache"

    local = resolve_data_root("s3://data/mnist", cache)
    assert local == cache / "data" / "mnist"
    assert (local / "train-images-idx3-ubyte.gz").read_bytes() == b"images-v1"
    assert (local / "sub" / "labels.gz").read_bytes() == b"labels"
    assert not (cache / "data" / "other").exists()

    report = sync_s3_prefix("s3://data/mnist/", cache)
    assert report.downloaded == [] and sorted(report.unchanged) == ["sub/labels.gz", "train-images-idx3-ubyte.gz"]

    s3.put_object(Bucket="data", Key="mnist/train-images-idx3-ubyte.gz", Body=b"images-v2")
    (local / "sub" / "labels.gz").write_bytes(b"truncated!")  # local damage: size differs
    report = sync_s3_prefix("s3://data/mnist", cache)
    assert sorted(report.downloaded) == ["sub/labels.gz", "train-images-idx3-ubyte.gz"]
    assert (local / "train-images-idx3-ubyte.gz").read_bytes() == b"images-v2"
    assert (local / "sub" / "labels.gz").read_bytes() == b"labels"
    assert not [p for p in local.rglob("*.part")]


def test_s3_errors_are_one_line(s3, tmp_path):
    with pytest.raises(DataRootError, match="NoSuchBucket") as info:
        resolve_data_root("s3://no-such-bucket/x", tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(DataRootError, match="no objects under this prefix"):
        resolve_data_root("s3://data/empty", tmp_path)
