"""Models of EXPERIMENTS.md 7: tile VAE, the tile VAE applied convolutionally, and the HVAE.

Names: the spec's "level 2" (one latent per tile, a grid) is ``tile`` here and its
"level 1" (one latent per image) is ``global``. Every ``logvar`` head is log sigma^2;
sampling uses ``std = exp(logvar / 2)`` (his code samples that way too; his loss
reads the same head as log sigma, which ``loss.original_loss`` reproduces).

TileVAE (T x T tile, latent C):
  enc Conv(1->32,k4,s2,p1)-ELU-Conv(32->64,k4,s2,p1)-ELU-FC(64·(T/4)^2->H)-ELU -> mu, logvar
  dec FC(C->H)-ELU-FC(H->64·(T/4)^2)-ELU-ConvT(64->32,k4,s2,p1)-ELU-ConvT(32->1,k4,s2,p1) -> logits
ConvTileVAE: unfold the (G·T)^2 image into G^2 tiles with stride T, encode each -> a
  (C, G, G) grid of (mu, logvar); decode each grid cell and fold back.
GlobalVAE over the C x G x G grid (an MLP; his was a conv VAE_ABS): q(z_global | z_tile)
  and a decoder that outputs the (mu, logvar) grid of p(z_tile | z_global).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = [
    "ConvTileVAE",
    "GlobalVAE",
    "HVAE",
    "HVAENoise",
    "HVAEOutput",
    "TileVAE",
    "from_tiles",
    "to_tiles",
]

_CONV_CHANNELS = 64


def to_tiles(x: torch.Tensor, tile_size: int) -> torch.Tensor:
    """(B, K, G·T, G·T) -> (B·G·G, K, T, T), tiles in row-major order per image."""
    batch, channels, height, width = x.shape
    if height % tile_size or width % tile_size or height != width:
        raise ValueError(f"image {height}x{width} is not a square grid of {tile_size}-pixel tiles")
    grid = height // tile_size
    tiles = x.unfold(2, tile_size, tile_size).unfold(3, tile_size, tile_size)  # B K G G T T
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(batch * grid * grid, channels, tile_size, tile_size)


def from_tiles(tiles: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Inverse of :func:`to_tiles`: (B·G·G, K, T, T) -> (B, K, G·T, G·T)."""
    n, channels, tile, _ = tiles.shape
    batch = n // (grid_size * grid_size)
    x = tiles.reshape(batch, grid_size, grid_size, channels, tile, tile).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, channels, grid_size * tile, grid_size * tile)


class TileVAE(nn.Module):
    """Small conv VAE for one T x T tile (the AVAE's conv VAE, sized by ``tile_size``)."""

    def __init__(self, tile_size: int = 16, latent_dim: int = 8, hidden: int = 128) -> None:
        super().__init__()
        side = tile_size // 4
        flat = _CONV_CHANNELS * side * side
        self.tile_size, self.latent_dim = tile_size, latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Conv2d(32, _CONV_CHANNELS, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ELU(),
        )
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ELU(),
            nn.Linear(hidden, flat),
            nn.ELU(),
            nn.Unflatten(1, (_CONV_CHANNELS, side, side)),
            nn.ConvTranspose2d(_CONV_CHANNELS, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),
        )

    def encode(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, T, T) -> (mu, logvar), each (N, C)."""
        h = self.encoder(tiles)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C) -> Bernoulli logits (N, 1, T, T)."""
        return self.decoder(z)


class ConvTileVAE(nn.Module):
    """A :class:`TileVAE` applied to every tile of a grid image (stride = tile size)."""

    def __init__(self, tile_vae: TileVAE, grid_size: int) -> None:
        super().__init__()
        self.tile_vae, self.grid_size = tile_vae, grid_size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, G·T, G·T) -> (mu, logvar) grids, each (B, C, G, G)."""
        mu, logvar = self.tile_vae.encode(to_tiles(x, self.tile_vae.tile_size))
        return self._to_grid(mu), self._to_grid(logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, G, G) -> logits (B, 1, G·T, G·T)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # row-major tiles, like to_tiles
        return from_tiles(self.tile_vae.decode(flat), self.grid_size)

    def _to_grid(self, rows: torch.Tensor) -> torch.Tensor:
        g = self.grid_size
        return rows.reshape(-1, g, g, rows.shape[1]).permute(0, 3, 1, 2)


class GlobalVAE(nn.Module):
    """q(z_global | z_tile grid) and p(z_tile grid | z_global) as (mu, logvar) grids."""

    def __init__(self, tile_latent_dim: int, grid_size: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.grid_shape = (tile_latent_dim, grid_size, grid_size)
        flat = tile_latent_dim * grid_size * grid_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, 2 * flat),
        )

    def encode(self, z_tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(z_tile)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z_global: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) -> (mu, logvar) of p(z_tile | z_global), each (B, C, G, G)."""
        c, g, _ = self.grid_shape
        mu_logvar = self.decoder(z_global).reshape(-1, 2 * c, g, g)
        return mu_logvar[:, :c], mu_logvar[:, c:]


@dataclass(frozen=True)
class HVAENoise:
    """Standard normal noise of one forward pass (drawn by the caller: reproducible)."""

    tile: torch.Tensor  # (B, C, G, G): z_tile ~ q(z_tile | x)
    global_: torch.Tensor  # (B, L): z_global ~ q(z_global | z_tile)
    prior: torch.Tensor  # (B, C, G, G): z_tile ~ p(z_tile | z_global)

    @staticmethod
    def draw(
        batch: int, tile_shape: tuple[int, int, int], global_dim: int, generator: torch.Generator, device: torch.device
    ) -> HVAENoise:
        tile = torch.randn(batch, *tile_shape, generator=generator)
        global_ = torch.randn(batch, global_dim, generator=generator)
        prior = torch.randn(batch, *tile_shape, generator=generator)
        return HVAENoise(tile.to(device), global_.to(device), prior.to(device))


@dataclass(frozen=True)
class HVAEOutput:
    tile_mu: torch.Tensor
    tile_logvar: torch.Tensor
    z_tile: torch.Tensor
    global_mu: torch.Tensor
    global_logvar: torch.Tensor
    z_global: torch.Tensor
    prior_mu: torch.Tensor
    prior_logvar: torch.Tensor
    z_prior: torch.Tensor
    logits: torch.Tensor  # decoded from z_tile ("posterior") or z_prior ("prior")


def _sample(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
    return mu if eps is None else mu + torch.exp(0.5 * logvar) * eps


class HVAE(nn.Module):
    """x -> q(z_tile|x) -> z_tile -> q(z_global|z_tile) -> z_global -> p(z_tile|z_global) -> tiles."""

    def __init__(self, tile_size: int, grid_size: int, tile_latent_dim: int, global_latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.tiles = ConvTileVAE(TileVAE(tile_size, tile_latent_dim, hidden), grid_size)
        self.global_vae = GlobalVAE(tile_latent_dim, grid_size, global_latent_dim, hidden)
        self.tile_shape = (tile_latent_dim, grid_size, grid_size)
        self.global_latent_dim = global_latent_dim

    def forward(
        self,
        x: torch.Tensor,
        noise: HVAENoise | None = None,
        decode_from: Literal["posterior", "prior"] = "posterior",
    ) -> HVAEOutput:
        """One pass; ``noise=None`` uses the means (z = mu) everywhere."""
        tile_mu, tile_logvar = self.tiles.encode(x)
        z_tile = _sample(tile_mu, tile_logvar, None if noise is None else noise.tile)
        global_mu, global_logvar = self.global_vae.encode(z_tile)
        z_global = _sample(global_mu, global_logvar, None if noise is None else noise.global_)
        prior_mu, prior_logvar = self.global_vae.decode(z_global)
        z_prior = _sample(prior_mu, prior_logvar, None if noise is None else noise.prior)
        logits = self.tiles.decode(z_tile if decode_from == "posterior" else z_prior)
        return HVAEOutput(
            tile_mu, tile_logvar, z_tile, global_mu, global_logvar, z_global, prior_mu, prior_logvar, z_prior, logits
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Images in [0, 1] from z_global ~ N(0, I), z_tile = mean of p(z_tile | z_global)."""
        z_global = torch.randn(n, self.global_latent_dim, generator=generator).to(device)
        prior_mu, _ = self.global_vae.decode(z_global)
        return torch.sigmoid(self.tiles.decode(prior_mu))
