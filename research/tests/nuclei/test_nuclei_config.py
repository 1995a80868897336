"""Bad keys or values refused in one line that lists the valid keys."""

from __future__ import annotations

import pytest
from nuclei.config import NucleiConfig
from nuclei.trainable import NucleiTrainable


def test_defaults_are_valid_and_detection_runs_at_the_last_epoch() -> None:
    cfg = NucleiConfig(epochs=4, detect_every=0)
    assert [cfg.detects_at(e) for e in (1, 2, 3, 4)] == [False, False, False, True]
    assert [NucleiConfig(epochs=4, detect_every=2).detects_at(e) for e in (1, 2, 3, 4)] == [False, True, False, True]


@pytest.mark.parametrize(
    "config, says",
    [
        ({"learning_rate": 0.1}, "learning_rate: Extra inputs are not permitted"),
        ({"tile_size": 8}, "tile_size: Input should be greater than or equal to 13"),
        ({"data": "folder"}, "needs data_root"),
        ({"data": "tiff"}, "data: Input should be 'synthetic' or 'folder'"),
        ({"train_fraction": 0.9, "val_fraction": 0.1}, "leaves no test patches"),
        ({"threshold": 1.5}, "threshold: Input should be less than 1"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_problem_and_the_valid_keys(config: dict, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        NucleiTrainable(config=config)
    message = str(raised.value)
    assert message.startswith("invalid nuclei config: ") and "\n" not in message
    assert says in message and "valid keys: " in message and "nms_radius" in message
