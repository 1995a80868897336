"""AVAE evaluation: loss on rotated test digits, and the orientation each class is encoded at.

Everything here draws randomness from the generator it is given, never from global RNGs,
so evaluating does not change the course of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainables.avae.model import ConvVAE
from trainables.avae.transforms import avae_loss, frozen, optimise_rotation, rotate

__all__ = [
    "InnerSearch",
    "Orientations",
    "find_rotations",
    "mean_resultant_length",
    "orientations",
    "rotation_losses",
]

_CHUNK = 512  # images per batched search (x n_candidates in one forward pass)


@dataclass(frozen=True)
class InnerSearch:
    """Settings of the rotation search at test time; enabled=False means theta = 0."""

    enabled: bool
    n_candidates: int
    n_steps: int
    lr: float


def find_rotations(
    model: ConvVAE, x: torch.Tensor, search: InnerSearch, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta, per-image loss) with z = mu, in chunks; theta = 0 (plain VAE) if disabled."""
    thetas, losses = [], []
    for chunk in torch.split(x, _CHUNK):
        if search.enabled:
            theta, loss = optimise_rotation(
                model, chunk, search.n_candidates, search.n_steps, search.lr, generator
            )
        else:
            with frozen(model), torch.no_grad():
                theta = torch.zeros(chunk.shape[0], device=chunk.device)
                loss = avae_loss(model, chunk, None)
        thetas.append(theta)
        losses.append(loss)
    return torch.cat(thetas), torch.cat(losses)


def rotation_losses(
    model: ConvVAE,
    x: torch.Tensor,
    rotations_deg: list[int],
    search: InnerSearch,
    generator: torch.Generator,
) -> dict[int, float]:
    """Mean per-image loss of the test digits presented rotated by each angle."""
    result = {}
    for deg in rotations_deg:
        phi = torch.full((x.shape[0],), math.radians(deg), device=x.device)
        x_rot = x if deg == 0 else rotate(x, phi)
        _, loss = find_rotations(model, x_rot, search, generator)
        result[deg] = float(loss.mean())
    return result


@dataclass(frozen=True)
class Orientations:
    """Digits shown at random phi; theta* found by the search; psi = phi + theta* (radians)."""

    phi: torch.Tensor
    theta: torch.Tensor
    labels: torch.Tensor

    @property
    def psi(self) -> torch.Tensor:
        return torch.remainder(self.phi + self.theta, 2 * math.pi)


def orientations(
    model: ConvVAE,
    x: torch.Tensor,
    labels: torch.Tensor,
    search: InnerSearch,
    generator: torch.Generator,
) -> Orientations:
    """Present each digit at a random angle and record the rotation the search picks."""
    phi = (torch.rand(x.shape[0], generator=generator) * 2 * math.pi).to(x.device)
    theta, _ = find_rotations(model, rotate(x, phi), search, generator)
    return Orientations(phi=phi.cpu(), theta=theta.cpu(), labels=labels.cpu())


def mean_resultant_length(psi: torch.Tensor, labels: torch.Tensor, harmonic: int) -> float:
    """Mean over classes of |mean exp(i * harmonic * psi)| (1 = one orientation per class)."""
    lengths = []
    for label in labels.unique():
        angles = harmonic * psi[labels == label].double()
        lengths.append(torch.hypot(angles.cos().mean(), angles.sin().mean()))
    return float(torch.stack(lengths).mean())
