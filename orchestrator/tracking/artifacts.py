"""Artifact uploads: to S3 (orchestrator/tracking/s3.py, the S3 adaptor) or through MLflow.

`ArtifactRouter.upload` decides, file by file, where an artifact goes:

- the run's artifact URI is `s3://...` (the server hands out a direct S3 root):
  boto3 uploads every file there itself;
- the run's artifact URI is `mlflow-artifacts:/...` (the server proxies artifacts) and
  the S3 destination behind the proxy is known: files over `direct_threshold_bytes`
  go straight to the same S3 key the proxy would use (so the UI lists them), smaller
  ones through the proxy; the run is tagged `orch.artifacts_s3` with the location;
- anything else (a local directory): MLflow's own client.

An upload that still fails after its retries raises; the caller (the spool) keeps the
files and tries again later, so a trial never fails because S3 is away.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from orchestrator.tracking.client import TrackingClient
from orchestrator.tracking.s3 import S3Uploader, direct_threshold_bytes

log = logging.getLogger(__name__)

TAG_ARTIFACTS_S3 = "orch.artifacts_s3"


def proxied_s3_location(artifact_uri: str, destination: str) -> str | None:
    """Where the server's proxy stores `mlflow-artifacts:/<exp>/<run>/artifacts`, under `destination`."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "mlflow-artifacts" or not destination.startswith("s3://"):
        return None
    return f"{destination.rstrip('/')}/{parsed.path.lstrip('/')}"


class ArtifactRouter:
    """Uploads a folder of artifacts for a run to where it belongs (see module doc)."""

    def __init__(
        self,
        client: TrackingClient,
        proxied_destination: str | None = None,
        direct_threshold: int | None = None,
        uploader: S3Uploader | None = None,
    ) -> None:
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
