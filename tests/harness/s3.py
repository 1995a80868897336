"""A real S3 API endpoint for tests: moto's server (`ThreadedMotoServer`) in this process, on a
loopback port, with the one bucket the tests use. Stopped by whoever started it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

BUCKET = "orch-artifacts"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    port: int
    server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, access_key: str, secret_key: str) -> dict[str, str]:
        """What a boto3 client (ours, or the MLflow server's artifact proxy) needs to reach this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self, environment: dict[str, str] | None = None):  # noqa: ANN201
        """A boto3 S3 client: from the process environment, or from `environment` when given."""
        import boto3

        if environment is None:
            return boto3.client("s3")
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=environment["AWS_DEFAULT_REGION"],
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "", environment: dict[str, str] | None = None) -> list[str]:
        found, token = [], None
        client = self.client(environment)
        for _ in range(1000):
            kwargs = {"Bucket": BUCKET, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = client.list_objects_v2(**kwargs)
            found += [item["Key"] for item in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                break
        return found
