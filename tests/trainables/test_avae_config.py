"""AVAEConfig rejects bad values and unknown keys."""

from __future__ import annotations

import pydantic
import pytest

from trainables.avae.config import AVAEConfig


def test_defaults_follow_the_spec():
    cfg = AVAEConfig()
    assert (cfg.latent_dim, cfg.lr, cfg.batch_size, cfg.epochs) == (6, 1e-3, 64, 40)
    assert cfg.train_mode == "train_opt" and cfg.test_time_opt
    assert (cfg.n_candidates, cfg.train_opt_steps, cfg.test_opt_steps) == (16, 5, 10)
    assert cfg.eval_rotations_deg == list(range(0, 181, 20))
    assert cfg.train_subset is None and cfg.test_subset is None
    assert (cfg.transform, cfg.loss, cfg.kl, cfg.eval_affine) == ("rotation", "bce", "log_var", True)


@pytest.mark.parametrize(
    "bad",
    [
        {"latent_dim": 0},
        {"lr": 0},
        {"lr": -1e-3},
        {"batch_size": 0},
        {"epochs": 0},
        {"train_mode": "sideways"},
        {"transform": "projective"},
        {"loss": "mse"},
        {"kl": "log_sigma"},
        {"n_candidates": 0},
        {"train_opt_steps": -1},
        {"opt_lr": 0},
        {"eval_rotations_deg": []},
        {"eval_rotations_deg": [0, 400]},
        {"eval_rotations_deg": [20, 20]},
        {"train_subset": 3},
        {"eval_every": 0},
        {"device": "tpu"},
        {"learning_rate": 1e-3},  # unknown key
    ],
)
def test_invalid_values_are_rejected(bad):
    with pytest.raises(pydantic.ValidationError):
        AVAEConfig(**bad)


def test_config_round_trips_through_json():
    cfg = AVAEConfig(train_subset=128, eval_rotations_deg=[0, 90], train_mode="augmented")
    assert AVAEConfig.model_validate(cfg.model_dump(mode="json")) == cfg
