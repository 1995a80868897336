"""AVAE evaluation: loss on rotated (and affinely perturbed) test digits, and the
orientation each class is encoded at.

Everything here draws randomness from the generator it is given, never from global RNGs,
so evaluating does not change the course of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from trainables.avae.loss import DEFAULT_OBJECTIVE, Objective
from trainables.avae.model import ConvVAE
from trainables.avae.transforms import (
    ScreenPrecision,
    TransformKind,
    affine_perturbations,
    avae_loss,
    frozen,
    identity_params,
    optimise_transform,
    rotate,
    rotation_angle,
    warp,
)

__all__ = [
    "InnerSearch",
    "Orientations",
    "affine_losses",
    "find_rotations",
    "find_transforms",
    "mean_resultant_length",
    "orientations",
    "rotation_losses",
]

_CHUNK = 512  # images per batched search (x n_candidates rows in the candidate pass)


@dataclass(frozen=True)
class InnerSearch:
    """Settings of the transform search at test time; enabled=False means the identity."""

    enabled: bool
    n_candidates: int
    n_steps: int
    lr: float
    transform: TransformKind = "rotation"
    objective: Objective = field(default=DEFAULT_OBJECTIVE)
    screen_precision: ScreenPrecision = "float32"


def find_transforms(
    model: ConvVAE, x: torch.Tensor, search: InnerSearch, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(params, per-image loss) with z = mu, in chunks; the identity (plain VAE) if disabled.

    params: theta (B,) for rotations, M (B, 2, 2) for affine searches.
    """
    found, losses = [], []
    for chunk in torch.split(x, _CHUNK):
        if search.enabled:
            params, loss = optimise_transform(
                model,
                chunk,
                search.transform,
                search.n_candidates,
                search.n_steps,
                search.lr,
                generator,
                objective=search.objective,
                screen_precision=search.screen_precision,
            )
        else:
            with frozen(model), torch.no_grad():
                params = identity_params(chunk.shape[0], search.transform, chunk.device)
                loss = avae_loss(model, chunk, None, objective=search.objective)
        found.append(params)
        losses.append(loss)
    return torch.cat(found), torch.cat(losses)


# The historical name; for rotation searches the params are the angles theta.
find_rotations = find_transforms


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
        _, loss = find_transforms(model, x_rot, search, generator)
        result[deg] = float(loss.mean())
    return result


def affine_losses(model: ConvVAE, x: torch.Tensor, search: InnerSearch, generator: torch.Generator) -> torch.Tensor:
    """Per-image loss of the test digits under one random affine perturbation each
    (rotation +-180 deg, shear +-55 deg, scale 0.75-1.5; EXPERIMENTS.md 2.5)."""
    matrices = affine_perturbations(x.shape[0], generator).to(x.device)
    _, loss = find_transforms(model, warp(x, matrices), search, generator)
    return loss


@dataclass(frozen=True)
class Orientations:
    """Digits shown at random phi; theta* found by the search; psi = phi + theta* (radians).

    ``params`` are the raw parameters the search found ((N, 2, 2) matrices for affine
    searches, where ``theta`` is the angle of the closest rotation); None for rotations.
    """

    phi: torch.Tensor
    theta: torch.Tensor
    labels: torch.Tensor
    params: torch.Tensor | None = None

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
    """Present each digit at a random angle and record the transform the search picks."""
    phi = (torch.rand(x.shape[0], generator=generator) * 2 * math.pi).to(x.device)
    params, _ = find_transforms(model, rotate(x, phi), search, generator)
    theta = rotation_angle(params, search.transform)
    return Orientations(
        phi=phi.cpu(),
        theta=theta.cpu(),
        labels=labels.cpu(),
        params=None if search.transform == "rotation" else params.cpu(),
    )


def mean_resultant_length(psi: torch.Tensor, labels: torch.Tensor, harmonic: int) -> float:
    """Mean over classes of |mean exp(i * harmonic * psi)| (1 = one orientation per class)."""
    lengths = []
    for label in labels.unique():
        angles = harmonic * psi[labels == label].double()
        lengths.append(torch.hypot(angles.cos().mean(), angles.sin().mean()))
    return float(torch.stack(lengths).mean())
