"""The dense heatmap at any pixel is the tile classifier applied to the tile centred there (same weights,
eval mode), for even and odd tile sizes, borders included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nuclei.data import extract_tiles
from nuclei.network import MIN_TILE, TileNet, dense_logits
from nuclei.synthetic import generate_patches


@pytest.mark.parametrize("tile_size", [MIN_TILE, 16, 21])
def test_dense_inference_equals_the_tile_classifier(tile_size: int) -> None:
    torch.manual_seed(0)
    model = TileNet(tile_size, width=6, dropout=0.3)
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    image = generate_patches(1, 40, seed=2)[0].image
    with torch.no_grad():
        dense = dense_logits(model, torch.from_numpy(image).permute(2, 0, 1))
        assert dense.shape == (4, 40, 40)
        rng = np.random.default_rng(tile_size)
        pixels = np.concatenate([rng.integers(0, 40, (12, 2)), [[0, 0], [39, 39], [0, 39]]])
        tiles = torch.from_numpy(extract_tiles(image, pixels, tile_size))
        single = model(tiles)
    assert single.shape == (len(pixels), 4)
    for (x, y), logits in zip(pixels, single):
        torch.testing.assert_close(dense[:, y, x], logits, rtol=1e-4, atol=1e-4)


def test_a_tile_smaller_than_the_network_takes_is_refused() -> None:
    with pytest.raises(ValueError, match=f"below {MIN_TILE}"):
        TileNet(MIN_TILE - 1)
