"""The small conv VAE of EXPERIMENTS.md 2.6 for 1x24x24 images.

enc: Conv(1->32,k4,s2,p1)-ELU-Conv(32->64,k4,s2,p1)-ELU-FC(2304->256)-ELU -> mu, log sigma^2
dec: FC(L->256)-ELU-FC(256->2304)-ELU-ConvT(64->32,k4,s2,p1)-ELU-ConvT(32->1,k4,s2,p1)
The decoder returns logits; sigmoid(logits) is the Bernoulli mean.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvVAE"]

_FEATURES = (64, 6, 6)  # encoder output for a 24x24 input
_FLAT = 64 * 6 * 6  # 2304
_HIDDEN = 256


class ConvVAE(nn.Module):
    def __init__(self, latent_dim: int = 6) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Flatten(),
            nn.Linear(_FLAT, _HIDDEN),
            nn.ELU(),
        )
        self.fc_mu = nn.Linear(_HIDDEN, latent_dim)
        self.fc_logvar = nn.Linear(_HIDDEN, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, _HIDDEN),
            nn.ELU(),
            nn.Linear(_HIDDEN, _FLAT),
            nn.ELU(),
            nn.Unflatten(1, _FEATURES),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z|x), each (B, L)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, 24, 24)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic pass (z = mu): (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar
