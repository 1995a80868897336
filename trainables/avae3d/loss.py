"""Per-object 3D VAE losses (nats): reconstruction summed over voxels + KL to N(0, I).

Reconstruction: Bernoulli BCE (reused from the 2D AVAE), or Brock et al.'s weighted
BCE ``-g t log o - (1 - g)(1 - t) log(1 - o)`` (g = 0.97 favours occupied voxels).
The KL of q = N(mu, I) is 0.5 ||mu||^2, which is also the original's L2 code penalty.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from trainables.avae.loss import bce_logits_per_image, bce_probs_per_image, kl_per_image

__all__ = ["ReconLoss", "kl_per_object", "recon_from_logits", "recon_from_probs"]

ReconLoss = Literal["bce", "weighted_bce"]
_PROB_EPS = 1e-6

kl_per_object = kl_per_image  # KL(N(mu, exp(logvar)) || N(0, I)) per row, (B,)


def recon_from_logits(logits: torch.Tensor, target: torch.Tensor, kind: ReconLoss = "bce", gamma: float = 0.97) -> torch.Tensor:
    """Reconstruction loss per object (B,) from decoder logits (numerically stable)."""
    logits = logits.float()
    if kind == "bce":
        return bce_logits_per_image(logits, target)
    loss = -gamma * target * F.logsigmoid(logits) - (1 - gamma) * (1 - target) * F.logsigmoid(-logits)
    return loss.flatten(1).sum(dim=1)


def recon_from_probs(probs: torch.Tensor, target: torch.Tensor, kind: ReconLoss = "bce", gamma: float = 0.97) -> torch.Tensor:
    """Reconstruction loss per object (B,) from (resampled) Bernoulli means."""
    if kind == "bce":
        return bce_probs_per_image(probs.float(), target)
    p = probs.float().clamp(_PROB_EPS, 1 - _PROB_EPS)
    loss = -gamma * target * p.log() - (1 - gamma) * (1 - target) * (1 - p).log()
    return loss.flatten(1).sum(dim=1)


def sample_z(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """z = mu + sigma * noise (noise None: z = mu)."""
    return mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
