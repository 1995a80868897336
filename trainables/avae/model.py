"""The small conv VAE of EXPERIMENTS.md 2.6 for 1 x C x C images (C = the canvas, a multiple of 4).

enc: Conv(1->32,k4,s2,p1)-ELU-Conv(32->64,k4,s2,p1)-ELU-FC(64*(C/4)^2->256)-ELU -> mu, log sigma^2
dec: FC(L->256)-ELU-FC(256->64*(C/4)^2)-ELU-ConvT(64->32,k4,s2,p1)-ELU-ConvT(32->1,k4,s2,p1)
The decoder returns logits; sigmoid(logits) is the Bernoulli mean. C = 24 (digits, the spec; FC 2304)
or 40 (MNIST padded as the paper did; FC 6400).

``architecture="paper"``: the original's network (EXPERIMENTS.md 2.2, Schott et al.'s ABS model) for 1x40x40:
enc: Conv(1->32,k5,s1,p2)+BN+ELU, Conv(32->32,k4,s2,p1)+BN+ELU, Conv(32->64,k3,s2,p1)+BN+ELU, Conv(64->16,k5,s1,p2)
-> 16x10x10 -> FC(1600->L) for mu and log sigma^2; dec: FC(L->1600) -> 16x10x10 -> ConvT(16->32,k4,s1,p2)+BN+ELU
-> ConvT(32->16,k5,s2,p1,op1)+BN+ELU -> ConvT(16->16,k5,s2,p2,op1)+BN+ELU -> ConvT(16->1,k3,s1,p1). Convolutions
followed by BatchNorm have no bias: that gives the code's 129,169 parameters at L = 8 (167,585 at L = 16).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "ConvVAE"]

_CHANNELS = 64  # encoder output channels; its side is canvas / 4
_HIDDEN = 256
DEFAULT_CANVAS = 24
ARCHITECTURES = ("spec", "paper")
PAPER_CANVAS = 40
_PAPER_CODE = (16, 10, 10)  # the paper encoder's output for 40x40


def _conv_bn_elu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ELU()]


class ConvVAE(nn.Module):
    def __init__(self, latent_dim: int = 6, canvas: int = DEFAULT_CANVAS, architecture: str = "spec") -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        if architecture == "paper" and canvas != PAPER_CANVAS:
            raise ValueError(f"the paper's architecture takes {PAPER_CANVAS}x{PAPER_CANVAS} images, got canvas {canvas}")
        if canvas % 4 or canvas < 8:
            raise ValueError(f"canvas must be a multiple of 4 and at least 8, got {canvas}")
        self.latent_dim = latent_dim
        self.canvas = canvas
        self.architecture = architecture
        if architecture == "paper":
            self._build_paper(latent_dim)
            return
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

    def _build_paper(self, latent_dim: int) -> None:
        flat = _PAPER_CODE[0] * _PAPER_CODE[1] * _PAPER_CODE[2]  # 1600
        self.encoder = nn.Sequential(
            *_conv_bn_elu(nn.Conv2d(1, 32, kernel_size=5, stride=1, padding=2, bias=False), 32),
            *_conv_bn_elu(nn.Conv2d(32, 32, kernel_size=4, stride=2, padding=1, bias=False), 32),
            *_conv_bn_elu(nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1, bias=False), 64),
            nn.Conv2d(64, 16, kernel_size=5, stride=1, padding=2),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            nn.Unflatten(1, _PAPER_CODE),
            *_conv_bn_elu(nn.ConvTranspose2d(16, 32, kernel_size=4, stride=1, padding=2, bias=False), 32),
            *_conv_bn_elu(nn.ConvTranspose2d(32, 16, kernel_size=5, stride=2, padding=1, output_padding=1, bias=False), 16),
            *_conv_bn_elu(nn.ConvTranspose2d(16, 16, kernel_size=5, stride=2, padding=2, output_padding=1, bias=False), 16),
            nn.ConvTranspose2d(16, 1, kernel_size=3, stride=1, padding=1),
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
