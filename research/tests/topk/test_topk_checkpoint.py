"""Checkpoint and resume are exact on a CPU: 2 epochs straight == 1 epoch, save, a fresh object, load, 1 more
(both models, the twin's too, the optimizer state, the boosting duty cycles, and every metric but the
timings, attack accuracies included)."""

from __future__ import annotations

from pathlib import Path

import torch
from topk.trainable import TopKTrainable

CONFIG = {
    "variant": "topk/0.25/every_relu",
    "boost_strength": 1.0,
    "width": 4,
    "train_subset": 64,
    "test_subset": 20,
    "attack_subset": 10,
    "attack_every": 1,
    "pgd_steps": 2,
    "epsilons": [0.1],
    "noise_sigmas": [0.2],
    "batch_size": 32,
    "epochs": 2,
    "device": "cpu",
    "seed": 5,
}
_TIMINGS = {"epoch_time_s", "samples_per_s", "attack_time_s"}


def test_resume_is_bitwise_equal_to_training_straight_through(tmp_path: Path) -> None:
    straight = TopKTrainable(config=CONFIG)
    straight_results = [straight.train(), straight.train()]

    first = TopKTrainable(config=CONFIG)
    first_result = first.train()
    first.save_checkpoint(str(tmp_path))
    torch.manual_seed(12345)  # the fresh process's RNGs are wherever they are: load must set them
    resumed = TopKTrainable(config=CONFIG)
    resumed.load_checkpoint(str(tmp_path))
    resumed_result = resumed.train()

    for expected, got in zip(straight_results, [first_result, resumed_result], strict=True):
        assert "acc_transfer_eps100" in _metrics(expected) and "acc_bpda_eps100" in _metrics(expected)
        assert _metrics(expected) == _metrics(got)
    assert resumed_result["epoch"] == 2 and resumed_result["done"] is True
    assert straight.twin is not None and resumed.twin is not None
    for a, b in ((straight.learner, resumed.learner), (straight.twin, resumed.twin)):
        for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.equal(a.optimizer.state[p]["momentum_buffer"], b.optimizer.state[q]["momentum_buffer"])
    duty = [v for k, v in straight.model.state_dict().items() if k.endswith("duty_cycle")]
    assert duty and any(d.sum() > 0 for d in duty)


def test_reset_config_leaves_the_object_as_a_fresh_setup() -> None:
    other = {**CONFIG, "variant": "relu", "seed": 1, "attack_every": 0}
    reused = TopKTrainable(config=CONFIG)
    reused.train()
    assert reused.reset_config(other)
    fresh = TopKTrainable(config=other)
    assert reused.twin is None and reused.epoch == 0
    assert _metrics(reused.train()) == _metrics(fresh.train())
    for (name, x), (_, y) in zip(reused.model.state_dict().items(), fresh.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def _metrics(result: dict) -> dict:
    """The trial's own metrics but the timings (Tune adds its own keys: time, host, ...)."""
    own = ("acc_", "train_", "test_", "twin_", "epoch", "lr", "done")
    return {k: v for k, v in result.items() if k.startswith(own) and k not in _TIMINGS}
