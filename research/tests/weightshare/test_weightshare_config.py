"""The typed config: the variant shorthand, and one clear line for a bad key or combination."""

from __future__ import annotations

import pytest
import torch
from weightshare.config import WeightShareConfig
from weightshare.trainable import WeightShareTrainable


def test_the_variant_sets_network_sharing_factor() -> None:
    cfg = WeightShareConfig(variant="resnet_small/repeat-forgotten/4")
    assert (cfg.network, cfg.sharing, cfg.factor, cfg.repeat_shortcut) == ("resnet_small", "repeat", 4, False)
    assert WeightShareConfig(variant="separable_small/depthwise/8", network="separable_small").factor == 8


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"learning_rate": 0.1}, ["learning_rate: Extra inputs are not permitted", "lr, momentum"]),
        ({"network": "resnet_small", "sharing": "depthwise"}, ["takes sharing none, thin, repeat, not depthwise"]),
        ({"factor": 3}, ["factor: Input should be 1, 2, 4 or 8"]),
        ({"dataset": "mnist"}, ["dataset mnist needs data_root"]),
        ({"variant": "resnet_small/repeat"}, ["is not NETWORK/SHARING/FACTOR"]),
        ({"variant": "resnet_small/repeat/2", "factor": 4}, ["sets factor=2, but factor=4 is given too"]),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key(config: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        WeightShareTrainable(config=config)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("invalid weightshare config: "), message
    assert "valid keys: dataset, data_root" in message
    for word in words:
        assert word in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line() -> None:
    with pytest.raises(ValueError, match="device: cuda asked for, but torch sees no GPU"):
        WeightShareTrainable(config={"device": "cuda"})
