"""Shared fixtures of the trainables tests: tiny configs that run in seconds on a CPU."""

from __future__ import annotations

import socket

import pytest

TINY_AVAE = {
    "train_subset": 128,
    "test_subset": 40,
    "epochs": 2,
    "batch_size": 64,
    "eval_rotations_deg": [0, 90],
    "n_candidates": 4,
    "train_opt_steps": 2,
    "test_opt_steps": 2,
    "device": "cpu",
}


@pytest.fixture
def tiny_avae_config() -> dict:
    return dict(TINY_AVAE)


@pytest.fixture
def ray_results_in_tmp(tmp_path_factory, monkeypatch):
    """A standalone Trainable makes a log dir under ~/ray_results; keep it out of $HOME."""
    from ray.tune.trainable import trainable

    monkeypatch.setattr(trainable, "DEFAULT_STORAGE_PATH", str(tmp_path_factory.mktemp("ray_results")))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """A boto3 S3 client talking HTTP to moto on 127.0.0.1, and the AWS_* variables that send boto3 there;
    bucket "data" exists. moto keeps its buckets per process, across servers: a test that lists a bucket
    gives it a name of its own."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="data")
    try:
        yield client
    finally:
        server.stop()
