"""Checkpoint and resume are exact on a CPU: 2 epochs straight == 1 epoch, save, a fresh object, load, 1 more
(weights, optimizer state and every metric but the timings), with augmentation and DropConnect drawing
random numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from weightshare.trainable import WeightShareTrainable

SMALL = {"train_subset": 64, "test_subset": 30, "batch_size": 32, "epochs": 2, "device": "cpu", "seed": 5}


@pytest.mark.parametrize(
    "config",
    [
        {"variant": "resnet_small/repeat/2", "augment": True},
        {"variant": "separable_small/depthwise/4", "lightconv": True, "dropconnect": 0.2},
    ],
    ids=["repeat-augmented", "lightconv-dropconnect"],
)
def test_resume_is_bitwise_equal_to_training_straight_through(tmp_path: Path, config: dict) -> None:
    config = {**SMALL, **config}
    straight = WeightShareTrainable(config=config)
    straight_results = [straight.train(), straight.train()]

    first = WeightShareTrainable(config=config)
    first_result = first.train()
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    first.save_checkpoint(str(folder))
    torch.manual_seed(12345)  # the fresh process's RNGs are wherever they are: load must set them
    resumed = WeightShareTrainable(config=config)
    resumed.load_checkpoint(str(folder))
    resumed_result = resumed.train()

    for expected, got in zip(straight_results, [first_result, resumed_result], strict=True):
        assert {k: v for k, v in expected.items() if k in _metrics(expected)} == {
            k: v for k, v in got.items() if k in _metrics(expected)
        }
    assert resumed_result["epoch"] == 2 and resumed_result["done"] is True
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    momentum = [straight.optimizer.state[p]["momentum_buffer"] for p in straight.model.parameters()]
    resumed_momentum = [resumed.optimizer.state[p]["momentum_buffer"] for p in resumed.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, resumed_momentum, strict=True))


def _metrics(result: dict) -> list[str]:
    return [
        k
        for k in (
            "epoch",
            "train_loss",
            "train_accuracy",
            "test_loss",
            "test_accuracy",
            "best_test_accuracy",
            "unique_params",
            "lr",
            "done",
        )
        if k in result
    ]


def test_reset_config_leaves_the_trial_as_a_fresh_one() -> None:
    """Ray Tune's actor reuse: the next trial in this process gets exactly what a new process would."""
    other = {**SMALL, "variant": "resnet_small/thin/2", "seed": 9}
    reused = WeightShareTrainable(config={**SMALL, "variant": "resnet_small/repeat/2"})
    reused.train()
    assert reused.reset_config(other) is True
    fresh = WeightShareTrainable(config=other)
    got, expected = reused.train(), fresh.train()
    assert {k: got[k] for k in _metrics(expected)} == {k: expected[k] for k in _metrics(expected)}
    assert got["epoch"] == 1
