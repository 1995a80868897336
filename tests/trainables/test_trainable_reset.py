"""Actor reuse: Ray Tune hands a finished trial's process to the next trial through `reset_config`. A research
trainable reset to a new config must train exactly like a fresh process with that config (bitwise on CPU)."""

from __future__ import annotations

import pytest
import torch

from trainables.avae.trainable import AVAETrainable


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_a_reset_trainable_trains_bitwise_like_a_fresh_one(tiny_avae_config: dict) -> None:
    first = {**tiny_avae_config, "epochs": 2, "seed": 1}
    second = {**tiny_avae_config, "epochs": 2, "seed": 7, "lr": tiny_avae_config.get("lr", 1e-3) * 2}
    reused = AVAETrainable(config=first)
    reused.train()
    reused._fallback_note = "left by a corrupt checkpoint of the first trial"  # per-trial state that must not leak
    assert reused.reset(dict(second)) is True
    assert reused.training_iteration == 0 and reused.epoch == 0 and not hasattr(reused, "_fallback_note")

    fresh = AVAETrainable(config=second)
    for _ in range(2):
        got, want = reused.train(), fresh.train()
        for name in ("train_loss", "val_loss"):
            assert got[name] == want[name], name
    for (name, a), (_, b) in zip(reused.model.state_dict().items(), fresh.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
