"""Per-image VAE loss in nats: Bernoulli BCE summed over pixels + analytic KL to N(0, I).

Besides the corrected loss (the default), :class:`Objective` offers the original code's
choices (EXPERIMENTS.md 2.4) for faithful re-runs:

* ``recon="mse_sum_faithful"``: ``F.mse_loss(recon, x, reduction='sum')`` between the
  sigmoid output and the mean/std-normalised image (MNIST's 0.1307 / 0.3081), the
  normalised image also being what the encoder sees. Puts an irreducible floor under the
  loss (the background costs >= 0.424^2 per pixel), as in the paper's Table 1.
* ``kl="log_sigma_faithful"``: the KL reads the ``fc_logvar`` head as log sigma
  (``-0.5 * sum(1 + 2 lv - mu^2 - exp(2 lv))``) while sampling still uses
  ``std = exp(0.5 lv)`` (log sigma^2), the original's inconsistency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_OBJECTIVE",
    "KLKind",
    "Objective",
    "ReconKind",
    "bce_logits_per_image",
    "bce_probs_per_image",
    "kl_per_image",
    "kl_log_sigma_per_image",
    "mse_sum_per_image",
]

ReconKind = Literal["bce", "mse_sum_faithful"]
KLKind = Literal["log_var", "log_sigma_faithful"]

# Resampled probabilities can hit exactly 0 (zero padding) or 1 (saturated sigmoid).
_PROB_EPS = 1e-6
# The original's MNIST normalisation (EXPERIMENTS.md 2.3), used by the faithful MSE loss.
FAITHFUL_MEAN, FAITHFUL_STD = 0.1307, 0.3081


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def kl_log_sigma_per_image(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """The original's KL, reading the head as log sigma: -0.5 sum(1 + 2lv - mu^2 - e^(2lv))."""
    return -0.5 * (1 + 2 * log_sigma - mu.pow(2) - (2 * log_sigma).exp()).sum(dim=1)


def bce_probs_per_image(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE between Bernoulli means and targets in [0, 1], summed per image, (B,)."""
    p = probs.clamp(_PROB_EPS, 1 - _PROB_EPS)
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    return bce.flatten(1).sum(dim=1)


def bce_logits_per_image(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE from logits (numerically stable, no resampling), summed per image, (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce.flatten(1).sum(dim=1)


def mse_sum_per_image(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed per image, (B,) (the original's ``BCE`` term)."""
    return (recon - target).pow(2).flatten(1).sum(dim=1)


@dataclass(frozen=True)
class Objective:
    """Which reconstruction term and which KL the AVAE loss uses (defaults: corrected)."""

    recon: ReconKind = "bce"
    kl: KLKind = "log_var"

    @property
    def normalises_input(self) -> bool:
        """The faithful MSE works on mean/std-normalised images (input and target)."""
        return self.recon == "mse_sum_faithful"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> what the model sees and reconstructs."""
        if self.normalises_input:
            return (x - FAITHFUL_MEAN) / FAITHFUL_STD
        return x

    def kl_term(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if self.kl == "log_sigma_faithful":
            return kl_log_sigma_per_image(mu, logvar)
        return kl_per_image(mu, logvar)

    def recon_from_probs(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Reconstruction term from (resampled) sigmoid outputs against the prepared target."""
        if self.recon == "mse_sum_faithful":
            return mse_sum_per_image(probs, target)
        return bce_probs_per_image(probs, target)

    def recon_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Reconstruction term without resampling (the plain VAE)."""
        if self.recon == "mse_sum_faithful":
            return mse_sum_per_image(torch.sigmoid(logits), target)
        return bce_logits_per_image(logits, target)


DEFAULT_OBJECTIVE = Objective()
