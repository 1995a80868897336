"""Per-image HVAE losses (nats or his units), each returning its terms for logging.

``elbo_terms``: negative hierarchical ELBO with a single sample,
  -ELBO = BCE(x | z_tile) + KL(q(z_global|z_tile) || N(0, I))
          + [log q(z_tile|x) - log p(z_tile|z_global)]
where the tile term uses the analytic entropy of q(z_tile|x) and log p at the sampled
z_tile (z_global depends on that sample, so no closed-form KL exists).

``original_terms``: his ``make_hvae_enc_dec_loss`` (EXPERIMENTS.md 7):
  MSE-sum(sigmoid(logits), x) + w1·KL1 + w2·(KL2_enc + KL2_dec)
with KL1 = global posterior, KL2_enc = tile posterior, KL2_dec = the decoder-predicted
tile distribution, all against N(0, I) and with his quirk of reading the log sigma^2
head as log sigma (KL = -0.5·sum(1 + 2h - mu^2 - exp(2h))); logits decoded from the
decoder-predicted sample, as in his forward.
"""

from __future__ import annotations

import torch

from trainables.avae.loss import (
    bce_logits_per_image,
    kl_log_sigma_per_image,
    kl_per_image,
    mse_sum_per_image,
)
from trainables.hvae.model import HVAEOutput

__all__ = ["elbo_terms", "original_terms", "pixel_mse_per_image"]


def pixel_mse_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel of the Bernoulli means, (B,)."""
    return (torch.sigmoid(logits) - x).pow(2).flatten(1).mean(dim=1)


def _kl_log_sigma_quirk(mu: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """His KL on (B, ...) tensors: grids are flattened to rows first."""
    return kl_log_sigma_per_image(mu.flatten(1), head.flatten(1))


def original_terms(out: HVAEOutput, x: torch.Tensor, kl_global_weight: float, kl_tile_weight: float) -> dict[str, torch.Tensor]:
    """His loss per image; ``loss`` is the weighted sum (his units: MSE-sum + KLs)."""
    mse_sum = mse_sum_per_image(torch.sigmoid(out.logits), x)
    kl_global = _kl_log_sigma_quirk(out.global_mu, out.global_logvar)
    kl_tile_enc = _kl_log_sigma_quirk(out.tile_mu, out.tile_logvar)
    kl_tile_dec = _kl_log_sigma_quirk(out.prior_mu, out.prior_logvar)
    loss = mse_sum + kl_global_weight * kl_global + kl_tile_weight * (kl_tile_enc + kl_tile_dec)
    return {"loss": loss, "mse_sum": mse_sum, "kl_global": kl_global, "kl_tile_enc": kl_tile_enc, "kl_tile_dec": kl_tile_dec}


def elbo_terms(out: HVAEOutput, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Negative ELBO per image in nats (``loss``) and its three terms."""
    recon = bce_logits_per_image(out.logits, x)
    kl_global = kl_per_image(out.global_mu, out.global_logvar)
    # log q(z|x) - log p(z|z_global) at the sample, with E_q log q replaced by -entropy;
    # the log(2 pi) terms cancel.
    kl_tile = 0.5 * (
        -1.0 - out.tile_logvar + out.prior_logvar + (out.z_tile - out.prior_mu).pow(2) * torch.exp(-out.prior_logvar)
    ).flatten(1).sum(dim=1)
    return {"loss": recon + kl_global + kl_tile, "recon": recon, "kl_global": kl_global, "kl_tile": kl_tile}
