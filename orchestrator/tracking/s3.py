"""The one adaptor that writes to S3: boto3, multipart uploads, retries with backoff.

Credentials, region and endpoint come from boto3's standard chain (environment incl.
AWS_ENDPOINT_URL, profile, instance role); nothing is read from the repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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

    def __init__(
        self,
        attempts: int = 4,
        max_wait_s: float = 8.0,
        multipart_threshold_mb: int = 16,
        multipart_chunk_mb: int = 16,
        connect_timeout_s: float = 5.0,
    ) -> None:
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
                "s3",
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=self._connect_timeout_s, read_timeout=120
                ),
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
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=self.max_wait_s),
            retry=retry_if_exception_type((BotoCoreError, ClientError, OSError)),
            reraise=True,
        ):
            with attempt:
                self._s3().upload_file(str(local_file), bucket, key, Config=transfer)

    def upload_dir(self, local_dir: Path, s3_uri: str) -> int:
        count = 0
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.upload_file(path, f"{s3_uri.rstrip('/')}/{path.relative_to(local_dir).as_posix()}")
            count += 1
        return count
