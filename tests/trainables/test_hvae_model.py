"""HVAE building blocks: tiling, the convolutional tile VAE, forward shapes, both losses."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.hvae.loss import elbo_terms, original_terms
from trainables.hvae.model import HVAE, ConvTileVAE, HVAENoise, TileVAE, from_tiles, to_tiles


def test_tiles_round_trip_and_order():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    tiles = to_tiles(x, 4)
    assert tiles.shape == (8, 1, 4, 4)
    assert torch.equal(tiles[1], x[0, :, 0:4, 4:8])  # row-major: tile (0, 1)
    assert torch.equal(tiles[6], x[1, :, 4:8, 0:4])  # second image, tile (1, 0)
    assert torch.equal(from_tiles(tiles, 2), x)
    with pytest.raises(ValueError, match="tiles"):
        to_tiles(torch.zeros(1, 1, 10, 10), 4)


class _IdentityTiles(TileVAE):
    """Encodes a tile as its pixels and decodes pixels back: encode∘decode = identity."""

    def encode(self, tiles):
        flat = tiles.flatten(1)
        return flat, torch.zeros_like(flat)

    def decode(self, z):
        return z.reshape(-1, 1, self.tile_size, self.tile_size)


def test_identity_tile_vae_applied_convolutionally_reproduces_the_image():
    conv = ConvTileVAE(_IdentityTiles(tile_size=8, latent_dim=64), grid_size=3)
    x = torch.rand(2, 1, 24, 24)
    mu, logvar = conv.encode(x)
    assert mu.shape == (2, 64, 3, 3)
    assert torch.equal(mu[1, :, 2, 0], x[1, 0, 16:24, 0:8].flatten())  # grid cell = its tile
    assert torch.equal(conv.decode(mu), x)


def test_grid_cells_are_encoded_independently():
    torch.manual_seed(0)
    conv = ConvTileVAE(TileVAE(tile_size=8, latent_dim=4, hidden=16), grid_size=2)
    x = torch.rand(1, 1, 16, 16)
    mu, _ = conv.encode(x)
    alone, _ = conv.tile_vae.encode(x[:, :, 8:16, 0:8])
    torch.testing.assert_close(mu[0, :, 1, 0], alone[0])


def _model_and_output(decode_from="posterior"):
    torch.manual_seed(0)
    model = HVAE(tile_size=8, grid_size=2, tile_latent_dim=3, global_latent_dim=5, hidden=16)
    x = torch.rand(4, 1, 16, 16)
    noise = HVAENoise.draw(4, model.tile_shape, 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    return model, x, model(x, noise, decode_from)


def test_forward_shapes():
    model, x, out = _model_and_output()
    assert out.logits.shape == x.shape
    assert out.tile_mu.shape == out.z_tile.shape == out.prior_mu.shape == (4, 3, 2, 2)
    assert out.global_mu.shape == out.z_global.shape == (4, 5)
    assert not torch.equal(out.z_tile, out.tile_mu)  # sampled
    deterministic = model(x)
    assert torch.equal(deterministic.z_tile, deterministic.tile_mu)
    assert model.sample(3, torch.Generator().manual_seed(1), torch.device("cpu")).shape == (3, 1, 16, 16)


def test_original_loss_decodes_from_the_global_path_and_matches_his_formula():
    model, x, out = _model_and_output("prior")
    expected_logits = model.tiles.decode(out.z_prior)
    torch.testing.assert_close(out.logits, expected_logits)
    terms = original_terms(out, x, kl_global_weight=0.25, kl_tile_weight=0.05)
    mse = ((torch.sigmoid(out.logits) - x) ** 2).sum()
    kl = lambda mu, h: -0.5 * torch.sum(1 + 2 * h - mu.pow(2) - (2 * h).exp())  # noqa: E731
    his = (
        mse
        + 0.25 * kl(out.global_mu, out.global_logvar)
        + 0.05 * kl(out.tile_mu, out.tile_logvar)
        + 0.05 * kl(out.prior_mu, out.prior_logvar)
    )
    torch.testing.assert_close(terms["loss"].sum(), his)


def test_elbo_matches_a_monte_carlo_log_density_estimate():
    model, x, out = _model_and_output("posterior")
    terms = elbo_terms(out, x)
    normal = torch.distributions.Normal
    log_q_tile = normal(out.tile_mu, torch.exp(0.5 * out.tile_logvar)).log_prob(out.z_tile)
    log_p_tile = normal(out.prior_mu, torch.exp(0.5 * out.prior_logvar)).log_prob(out.z_tile)
    entropy = normal(out.tile_mu, torch.exp(0.5 * out.tile_logvar)).entropy()
    # Our tile term = -entropy - log p at the sample (the sample-based log q has the same mean).
    expected = (-entropy - log_p_tile).flatten(1).sum(1)
    torch.testing.assert_close(terms["kl_tile"], expected)
    assert terms["loss"].shape == (4,) and torch.isfinite(terms["loss"]).all()
    assert (terms["kl_global"] >= 0).all()
    total = terms["recon"] + terms["kl_global"] + terms["kl_tile"]
    torch.testing.assert_close(terms["loss"], total)
    assert math.isfinite(float((log_q_tile - log_p_tile).sum().detach()))


def test_elbo_gradients_reach_every_parameter():
    model, x, out = _model_and_output("posterior")
    elbo_terms(out, x)["loss"].mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []
