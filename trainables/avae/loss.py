"""Per-image VAE loss in nats: Bernoulli BCE summed over pixels + analytic KL to N(0, I)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kl_per_image", "bce_probs_per_image", "bce_logits_per_image"]

# Resampled probabilities can hit exactly 0 (zero padding) or 1 (saturated sigmoid).
_PROB_EPS = 1e-6


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def bce_probs_per_image(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE between Bernoulli means and targets in [0, 1], summed per image, (B,)."""
    p = probs.clamp(_PROB_EPS, 1 - _PROB_EPS)
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    return bce.flatten(1).sum(dim=1)


def bce_logits_per_image(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE from logits (numerically stable, no resampling), summed per image, (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce.flatten(1).sum(dim=1)
