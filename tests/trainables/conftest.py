"""Shared fixtures of the trainables tests: tiny configs that run in seconds on a CPU."""

from __future__ import annotations

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
