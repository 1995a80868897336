"""Rotation layer A, its inverse, the AVAE loss, and the inner search for the rotation.

A(x) rotates images by theta (radians) with ``affine_grid`` + bilinear ``grid_sample``
(zero padding, ``align_corners=False``); A^-1 is the rotation by -theta.
The AVAE loss of an image x at theta reconstructs x itself from the rotated input:
``BCE(A^-1(sigmoid(dec(z))), x) + KL`` with ``z = enc(A(x))``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from trainables.avae.loss import bce_logits_per_image, bce_probs_per_image, kl_per_image
from trainables.avae.model import ConvVAE

__all__ = [
    "avae_loss",
    "candidate_angles",
    "frozen",
    "optimise_rotation",
    "optimise_rotation_loop",
    "rotate",
]


def rotate(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate each image (B, C, H, W) about its centre by theta (B,) radians."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(theta)
    matrix = torch.stack(
        [torch.stack([cos, -sin, zero], dim=1), torch.stack([sin, cos, zero], dim=1)], dim=1
    )
    grid = F.affine_grid(matrix.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def avae_loss(
    model: ConvVAE,
    x: torch.Tensor,
    theta: Optional[torch.Tensor],
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per-image loss (B,) of reconstructing x through A_theta; theta=None is the plain VAE.

    ``noise`` (B, L) ~ N(0, I) samples z = mu + sigma * noise; None uses z = mu.
    """
    x_in = x if theta is None else rotate(x, theta)
    mu, logvar = model.encode(x_in)
    z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
    logits = model.decode(z)
    if theta is None:
        recon = bce_logits_per_image(logits, x)
    else:
        recon = bce_probs_per_image(rotate(torch.sigmoid(logits), -theta), x)
    return recon + kl_per_image(mu, logvar)


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Weights without gradients and the model in eval mode; both restored afterwards."""
    was_training = model.training
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), requires):
            p.requires_grad_(flag)
        model.train(was_training)


def candidate_angles(
    n_candidates: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Identity, then n-1 angles evenly spaced over 2*pi with one random common offset (K,)."""
    n_others = n_candidates - 1
    if n_others == 0:
        return torch.zeros(1, device=device)
    spacing = 2 * math.pi / n_others
    offset = torch.rand((), generator=generator) * spacing
    others = offset + spacing * torch.arange(n_others, dtype=torch.float32)
    return torch.cat([torch.zeros(1), others]).to(device)


def _best_candidates(
    model: ConvVAE, x: torch.Tensor, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All K candidates of all B images in one forward pass; best (theta, loss) per image."""
    batch, k = x.shape[0], angles.shape[0]
    x_rep = x.repeat_interleave(k, dim=0)  # image-major: rows b*k .. b*k + k-1
    theta = angles.repeat(batch)
    losses = avae_loss(model, x_rep, theta).view(batch, k)
    best_loss, best_index = losses.min(dim=1)
    return angles[best_index], best_loss


def _best_candidates_loop(
    model: ConvVAE, x: torch.Tensor, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow reference of :func:`_best_candidates`: one forward pass per candidate."""
    losses = torch.stack(
        [avae_loss(model, x, angle.expand(x.shape[0])) for angle in angles], dim=1
    )
    best_loss, best_index = losses.min(dim=1)
    return angles[best_index], best_loss


def _refine(
    model: ConvVAE,
    x: torch.Tensor,
    theta0: torch.Tensor,
    loss0: torch.Tensor,
    n_steps: int,
    lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the per-image theta vector, keeping the best (theta, loss) seen per image."""
    best_theta, best_loss = theta0.clone(), loss0.clone()
    if n_steps == 0:
        return best_theta, best_loss
    theta = theta0.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=lr)
    with torch.enable_grad():
        for _ in range(n_steps):
            loss = avae_loss(model, x, theta)
            _keep_better(best_theta, best_loss, theta.detach(), loss.detach())
            optimiser.zero_grad(set_to_none=True)
            # Images are independent (z = mu, no batch norm), so the gradient of the
            # sum is the per-image gradient.
            loss.sum().backward()
            optimiser.step()
    with torch.no_grad():
        _keep_better(best_theta, best_loss, theta.detach(), avae_loss(model, x, theta))
    return best_theta, best_loss


def _keep_better(
    best_theta: torch.Tensor, best_loss: torch.Tensor, theta: torch.Tensor, loss: torch.Tensor
) -> None:
    better = loss < best_loss
    best_theta[better] = theta[better]
    best_loss[better] = loss[better]


def optimise_rotation(
    model: ConvVAE,
    x: torch.Tensor,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rotation per image: (theta (B,) radians, per-image loss (B,)), both detached.

    Tries the identity and n_candidates-1 evenly spaced angles (random common offset,
    drawn from the CPU ``generator``) in one batched pass, keeps the best per image, then
    runs ``n_steps`` of Adam(lr) on theta, tracking the best per image. The returned loss
    is never worse than the identity's. The weights get no gradients; mode is restored.
    """
    return _optimise(model, x, n_candidates, n_steps, lr, generator, _best_candidates)


def optimise_rotation_loop(
    model: ConvVAE,
    x: torch.Tensor,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`optimise_rotation` with a Python loop over candidates (slow)."""
    return _optimise(model, x, n_candidates, n_steps, lr, generator, _best_candidates_loop)


def _optimise(model, x, n_candidates, n_steps, lr, generator, search):
    angles = candidate_angles(n_candidates, generator, x.device)
    with frozen(model):
        with torch.no_grad():
            theta0, loss0 = search(model, x, angles)
        return _refine(model, x, theta0, loss0, n_steps, lr)
