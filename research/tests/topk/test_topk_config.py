"""The config: the variant shorthand, and bad keys or values refused in one line that lists the valid keys."""

from __future__ import annotations

import pytest
from topk.config import TopKConfig, milli
from topk.trainable import TopKTrainable


def test_variant_expands_to_activation_frac_and_placement() -> None:
    cfg = TopKConfig(variant="topk_global/0.05/every_relu")
    assert (cfg.activation, cfg.frac, cfg.placement) == ("topk_global", 0.05, "every_relu")
    assert TopKConfig(variant="relu").activation == "relu"
    assert (cfg.network_name, cfg.width_value) == ("small_cnn", 32)


@pytest.mark.parametrize(
    "config, says",
    [
        ({"learning_rate": 0.1}, "learning_rate: Extra inputs are not permitted"),
        ({"variant": "topk/x"}, "is not relu or ACTIVATION/FRAC"),
        ({"variant": "topk/0.1", "frac": 0.25}, "but frac=0.25 is given too"),
        ({"frac": 0.0}, "frac: Input should be greater than 0"),
        ({"epsilons": [0.1, 0.1002]}, "collide once x 1000"),
        ({"epsilons": [8]}, "on the [0, 1] pixel scale"),
        ({"dataset": "cifar10"}, "needs data_root"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_problem_and_the_valid_keys(config: dict, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        TopKTrainable(config=config)
    message = str(raised.value)
    assert "\n" not in message and says in message and "valid keys: " in message and "epsilons" in message


def test_metric_keys_carry_no_dots() -> None:
    assert (milli(0.1), milli(8 / 255), milli(0.05)) == (100, 31, 50)
