"""The small conv VAE of EXPERIMENTS.md 2.6 for 1 x C x C images (C = the canvas, a multiple of 4).

enc: Conv(1->32,k4,s2,p1)-ELU-Conv(32->64,k4,s2,p1)-ELU-FC(64*(C/4)^2->256)-ELU -> mu, log sigma^2
dec: FC(L->256)-ELU-FC(256->64*(C/4)^2)-ELU-ConvT(64->32,k4,s2,p1)-ELU-ConvT(32->1,k4,s2,p1)
The decoder returns logits; sigmoid(logits) is the Bernoulli mean. C = 24 (digits, the spec; FC 2304)
or 40 (MNIST padded as the paper did; FC 6400).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvVAE"]

_CHANNELS = 64  # encoder output channels; its side is canvas / 4
_HIDDEN = 256
DEFAULT_CANVAS = 24


class ConvVAE(nn.Module):
    def __init__(self, latent_dim: int = 6, canvas: int = DEFAULT_CANVAS) -> None:
        super().__init__()
        if canvas % 4 or canvas < 8:
            raise ValueError(f"canvas must be a multiple of 4 and at least 8, got {canvas}")
        self.latent_dim = latent_dim
        self.canvas = canvas
        side = canvas // 4
        flat = _CHANNELS * side * side
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.Flatten(),
            nn.Linear(flat, _HIDDEN),
            nn.ELU(),
        )
        self.fc_mu = nn.Linear(_HIDDEN, latent_dim)
        self.fc_logvar = nn.Linear(_HIDDEN, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, _HIDDEN),
            nn.ELU(),
            nn.Linear(_HIDDEN, flat),
            nn.ELU(),
            nn.Unflatten(1, (_CHANNELS, side, side)),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),
            nn.ELU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z|x), each (B, L)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, canvas, canvas)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic pass (z = mu): (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar
