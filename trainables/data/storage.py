"""Data roots: a local folder, or ``s3://bucket/prefix`` mirrored into a local cache.

``resolve_data_root(root, cache_dir)`` is what a trainable calls with the ``data_root``
of its config. For S3 it is the only code in ``trainables/`` that talks to S3 (boto3,
standard credential chain; endpoint from ``AWS_ENDPOINT_URL`` for MinIO/moto/Ceph).

Cache layout: ``<cache_dir>/<bucket>/<prefix>/...`` mirrors the objects under the
prefix; ``.s3-sync.json`` there records each object's size and ETag as listed. An
object is downloaded only when missing locally or when its size/ETag changed; each
file is written to a temp file and renamed (atomic), under a lock file so that trials
sharing a node do not download the same object twice. Objects deleted from S3 are
left in the cache.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["DataRootError", "SyncReport", "resolve_data_root", "sync_s3_prefix"]

_MANIFEST = ".s3-sync.json"
_LOCK = ".s3-sync.lock"


class DataRootError(RuntimeError):
    """A data root that cannot be resolved (missing folder, S3 error)."""

    def __init__(self, root: str, reason: str) -> None:
        self.root, self.reason = root, reason
        super().__init__(f"data root {root}: {reason}")


@dataclass
class SyncReport:
    """What one :func:`sync_s3_prefix` call did (relative paths)."""

    local_dir: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def resolve_data_root(root: str, cache_dir: Path) -> Path:
    """A local path as is; ``s3://bucket/prefix`` synced into ``cache_dir`` -> local folder."""
    if root.startswith("s3://"):
        return sync_s3_prefix(root, cache_dir).local_dir
    if "://" in root:
        raise DataRootError(root, "unsupported scheme; use a local path or s3://bucket/prefix")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataRootError(root, "no such folder")
    return path


def _parse_s3(root: str) -> tuple[str, str]:
    bucket, _, prefix = root[len("s3://") :].partition("/")
    if not bucket:
        raise DataRootError(root, "no bucket name")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def _relative_path(root: str, key: str, prefix: str) -> str:
    relative = PurePosixPath(key[len(prefix) :])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise DataRootError(root, f"object key {key!r} would leave the cache folder")
    return str(relative)


def _s3_client() -> Any:
    import boto3

    # boto3 reads AWS_ENDPOINT_URL itself (botocore >= 1.31); passing it keeps older
    # versions working with MinIO/moto too.
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / _LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync_s3_prefix(root: str, cache_dir: Path, client: Any = None) -> SyncReport:
    """Download the objects under ``s3://bucket/prefix`` that are missing or changed."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _parse_s3(root)
    local_dir = Path(cache_dir).expanduser() / bucket / prefix
    local_dir.mkdir(parents=True, exist_ok=True)
    report = SyncReport(local_dir)
    try:
        client = client or _s3_client()
        with _locked(local_dir):
            manifest_path = local_dir / _MANIFEST
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                manifest = {}
            listed = _list_objects(client, bucket, prefix)
            if not listed:
                raise DataRootError(root, "no objects under this prefix")
            for key, size, etag in listed:
                relative = _relative_path(root, key, prefix)
                target = local_dir / relative
                known = manifest.get(relative)
                if target.is_file() and target.stat().st_size == size and known == {"size": size, "etag": etag}:
                    report.unchanged.append(relative)
                    continue
                _download_atomic(client, bucket, key, target)
                manifest[relative] = {"size": size, "etag": etag}
                report.downloaded.append(relative)
                _write_json_atomic(manifest_path, manifest)  # progress survives interruption
    except ClientError as error:
        info = error.response.get("Error", {})
        raise DataRootError(root, f"{info.get('Code', 'error')}: {info.get('Message', error)}") from None
    except BotoCoreError as error:
        raise DataRootError(root, " ".join(str(error).split())) from None
    return report


def _list_objects(client: Any, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):  # "folder" placeholder objects
                objects.append((item["Key"], int(item["Size"]), item["ETag"].strip('"')))
    return objects


def _download_atomic(client: Any, bucket: str, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            client.download_fileobj(bucket, key, handle)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp_name, path)
