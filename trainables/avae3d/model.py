"""``VoxelVAE``: the Conv3d VAE of the original (``VAE3d``, EXPERIMENTS.md 3.2), any n = 8k.

enc: Conv3d(1->16,k3,s1,p1)+BN+ELU -> Conv3d(16->16,k5,s2,p2)+BN+ELU
     -> Conv3d(16->32,k5,s2,p2)+BN+ELU -> Conv3d(32->8,k3,s2,p1) -> 8 (n/8)^3 -> Linear -> mu
dec: Linear(L -> 8 (n/8)^3) -> ConvT3d(8->32,k3,s2,p1,op1)+BN+ELU
     -> ConvT3d(32->16,k5,s2,p2,op1)+BN+ELU -> ConvT3d(16->16,k5,s2,p2,op1)+BN+ELU
     -> ConvT3d(16->1,k3,s1,p1) -> logits (sigmoid = Bernoulli mean)
At n = 48 and L = 8 this has the original's 236,337 parameters; ``posterior="learned"``
adds a log-variance head.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VoxelVAE"]

_CODE_CHANNELS = 8


def _block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm3d(channels), nn.ELU()]


class VoxelVAE(nn.Module):
    def __init__(self, latent_dim: int = 8, grid_size: int = 16, learned_sigma: bool = False) -> None:
        super().__init__()
        if grid_size % 8:
            raise ValueError(f"grid_size must be a multiple of 8, got {grid_size}")
        self.latent_dim = latent_dim
        side = grid_size // 8
        flat = _CODE_CHANNELS * side**3
        self.encoder = nn.Sequential(
            *_block(nn.Conv3d(1, 16, 3, 1, 1), 16),
            *_block(nn.Conv3d(16, 16, 5, 2, 2), 16),
            *_block(nn.Conv3d(16, 32, 5, 2, 2), 32),
            nn.Conv3d(32, _CODE_CHANNELS, 3, 2, 1),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim) if learned_sigma else None
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            nn.Unflatten(1, (_CODE_CHANNELS, side, side, side)),
            *_block(nn.ConvTranspose3d(_CODE_CHANNELS, 32, 3, 2, 1, output_padding=1), 32),
            *_block(nn.ConvTranspose3d(32, 16, 5, 2, 2, output_padding=1), 16),
            *_block(nn.ConvTranspose3d(16, 16, 5, 2, 2, output_padding=1), 16),
            nn.ConvTranspose3d(16, 1, 3, 1, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2), each (B, L); log sigma^2 = 0 unless the variance is learned."""
        h = self.encoder(x)
        mu = self.fc_mu(h)
        logvar = self.fc_logvar(h) if self.fc_logvar is not None else torch.zeros_like(mu)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, n, n, n)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic pass (z = mu): (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar
