"""Artifact uploads: S3 through boto3 (multipart, retried with backoff) or through MLflow.

`ArtifactRouter.upload` decides, file by file, where an artifact goes:

- the run's artifact URI is `s3://...` (the server hands out a direct S3 root):
  boto3 uploads every file there itself;
- the run's artifact URI is `mlflow-artifacts:/...` (the server proxies artifacts) and
  the S3 destination behind the proxy is known: files over `direct_threshold_bytes`
  go straight to the same S3 key the proxy would use (so the UI lists them), smaller
  ones through the proxy; the run is tagged `orch.artifacts_s3` with the location;
- anything else (a local directory): MLflow's own client.

Credentials, region and endpoint come from boto3's standard chain (environment incl.
AWS_ENDPOINT_URL, profile, instance role); nothing is read from the repository.
An upload that still fails after its retries raises; the caller (the spool) keeps the
files and tries again later, so a trial never fails because S3 is away.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.tracking.client import TrackingClient

log = logging.getLogger(__name__)

TAG_ARTIFACTS_S3 = "orch.artifacts_s3"
DEFAULT_DIRECT_THRESHOLD_MB = 64.0


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def direct_threshold_bytes() -> int:
    return int(float(os.environ.get("ORCH_DIRECT_S3_THRESHOLD_MB", DEFAULT_DIRECT_THRESHOLD_MB)) * 1024 * 1024)


class S3Uploader:
    """The one adaptor that writes to S3: boto3 with multipart and retries with backoff."""

    def __init__(self, attempts: int = 4, max_wait_s: float = 8.0, multipart_threshold_mb: int = 16,
                 multipart_chunk_mb: int = 16, connect_timeout_s: float = 5.0) -> None:
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self._multipart = (multipart_threshold_mb * 1024 * 1024, multipart_chunk_mb * 1024 * 1024)
        self._connect_timeout_s = connect_timeout_s
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                    connect_timeout=self._connect_timeout_s, read_timeout=120),
            )
        return self._client

    def upload_file(self, local_file: Path, s3_uri: str) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        bucket, key = split_s3_uri(s3_uri)
        threshold, chunk = self._multipart
        transfer = TransferConfig(multipart_threshold=threshold, multipart_chunksize=chunk, max_concurrency=4)
        for attempt in Retrying(
            stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.5, max=self.max_wait_s),
            retry=retry_if_exception_type((BotoCoreError, ClientError, OSError)), reraise=True,
        ):
            with attempt:
                self._s3().upload_file(str(local_file), bucket, key, Config=transfer)

    def upload_dir(self, local_dir: Path, s3_uri: str) -> int:
        count = 0
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.upload_file(path, f"{s3_uri.rstrip('/')}/{path.relative_to(local_dir).as_posix()}")
            count += 1
        return count


def proxied_s3_location(artifact_uri: str, destination: str) -> str | None:
    """Where the server's proxy stores `mlflow-artifacts:/<exp>/<run>/artifacts`, under `destination`."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "mlflow-artifacts" or not destination.startswith("s3://"):
        return None
    return f"{destination.rstrip('/')}/{parsed.path.lstrip('/')}"


class ArtifactRouter:
    """Uploads a folder of artifacts for a run to where it belongs (see module doc)."""

    def __init__(self, client: TrackingClient, proxied_destination: str | None = None,
                 direct_threshold: int | None = None, uploader: S3Uploader | None = None) -> None:
        self._client = client
        self._destination = proxied_destination
        self._threshold = direct_threshold_bytes() if direct_threshold is None else direct_threshold
        self._uploader = uploader or S3Uploader()
        self._artifact_uris: dict[str, str] = {}
        self._tagged: set[str] = set()

    def _artifact_uri(self, run_id: str) -> str:
        if run_id not in self._artifact_uris:
            self._artifact_uris[run_id] = self._client.artifact_uri(run_id)
        return self._artifact_uris[run_id]

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Upload now; raises on failure (after retries) so the caller can keep the files for later."""
        root = self._artifact_uri(run_id)
        target = f"{root.rstrip('/')}/{artifact_path}".rstrip("/")
        if root.startswith("s3://"):
            self._uploader.upload_dir(local_dir, target)
            return
        direct_root = proxied_s3_location(root, self._destination) if self._destination else None
        if direct_root is None:
            self._client.log_artifacts(run_id, local_dir, artifact_path)
            return
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(local_dir)
            if path.stat().st_size > self._threshold:
                self._uploader.upload_file(path, f"{direct_root}/{artifact_path}/{relative.as_posix()}")
                if run_id not in self._tagged:
                    self._client.set_tags(run_id, {TAG_ARTIFACTS_S3: direct_root})
                    self._tagged.add(run_id)
            else:
                subdir = "/".join(filter(None, [artifact_path, relative.parent.as_posix().strip(".")]))
                self._client.log_artifact_file(run_id, path, subdir or None)
