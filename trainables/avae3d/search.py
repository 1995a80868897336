"""The orientation search of the 3D AVAE (frozen weights, z = mu), used in training and test.

* :func:`exhaustive_search`: the loss of all 24 cube rotations of all B objects in ONE
  batched forward pass (B * 24 grids, exact voxel permutations); argmin per object.
* :func:`restarts_search`: the 24 cube rotations plus ``n_restarts`` random rotations
  (and translations) per object, evaluated in one pass; Adam on the axis-angle (and
  translation) parameters of the best ``n_keep``; the best seen per object is kept.
  Losses of resampled candidates compare ``T^-1(sigmoid(dec(enc(T x))))`` with x, so a
  translation cannot lower the loss by pushing the object out of the grid.
Both leave no gradients on the weights and restore the model's train/eval mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from trainables.avae.transforms import frozen
from trainables.avae3d.loss import (
    ReconLoss,
    kl_per_object,
    recon_from_logits,
    recon_from_probs,
    sample_z,
)
from trainables.avae3d.model import VoxelVAE
from trainables.avae3d.rotations import (
    N_CUBE_ROTATIONS,
    affine_transform,
    all_cube_rotations,
    cube_rotation_matrices,
    random_rotation_matrices,
    rotvec_to_matrix,
)

__all__ = [
    "LossSpec",
    "Transform",
    "exhaustive_search",
    "object_loss",
    "restarts_search",
    "transformed_loss",
]


@dataclass(frozen=True)
class LossSpec:
    """How a per-object loss is computed: recon kind, gamma, whether KL counts, autocast."""

    recon: ReconLoss = "bce"
    gamma: float = 0.97
    with_kl: bool = True
    bf16: bool = False

    def autocast(self, x: torch.Tensor):
        if self.bf16 and x.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass(frozen=True)
class Transform:
    """A chosen continuous transform per object: p -> R p + t."""

    rotation: torch.Tensor  # (B, 3, 3)
    translation: torch.Tensor | None  # (B, 3) or None


def object_loss(
    model: VoxelVAE, x: torch.Tensor, spec: LossSpec, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In-frame loss per object (B,), and the logits and mu it came from."""
    with spec.autocast(x):
        mu, logvar = model.encode(x)
        logits = model.decode(sample_z(mu, logvar, noise))
    mu, logvar = mu.float(), logvar.float()
    loss = recon_from_logits(logits, x, spec.recon, spec.gamma)
    if spec.with_kl:
        loss = loss + kl_per_object(mu, logvar)
    return loss, logits.float(), mu


def transformed_loss(
    model: VoxelVAE,
    x: torch.Tensor,
    transform: Transform,
    spec: LossSpec,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss per object (B,) of reconstructing x through T: (loss, probs in x's frame)."""
    x_t = affine_transform(x, transform.rotation, transform.translation)
    with spec.autocast(x):
        mu, logvar = model.encode(x_t)
        logits = model.decode(sample_z(mu, logvar, noise))
    probs = affine_transform(torch.sigmoid(logits.float()), transform.rotation, transform.translation, inverse=True)
    loss = recon_from_probs(probs, x, spec.recon, spec.gamma)
    if spec.with_kl:
        loss = loss + kl_per_object(mu.float(), logvar.float())
    return loss, probs


def exhaustive_search(model: VoxelVAE, x: torch.Tensor, spec: LossSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Best cube rotation per object: (index (B,) int64, loss (B,)), one forward pass."""
    with frozen(model), torch.no_grad():
        losses, _, _ = object_loss(model, all_cube_rotations(x), spec)
        best_loss, best_index = losses.view(x.shape[0], N_CUBE_ROTATIONS).min(dim=1)
    return best_index, best_loss


def _matrix_to_rotvec(matrices: torch.Tensor) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.from_numpy(Rotation.from_matrix(matrices.double().numpy()).as_rotvec()).float()


def restarts_search(
    model: VoxelVAE,
    x: torch.Tensor,
    spec: LossSpec,
    generator: torch.Generator,
    n_restarts: int = 32,
    n_keep: int = 8,
    n_steps: int = 20,
    lr: float = 0.03,
    max_translation: float = 0.0,
) -> tuple[Transform, torch.Tensor]:
    """Best continuous transform per object and its loss (B,); randomness from ``generator``."""
    b, device = x.shape[0], x.device
    rotvec, shift = _initial_candidates(b, n_restarts, max_translation, generator)
    k = rotvec.shape[1]
    rotvec, shift = rotvec.to(device), shift.to(device) if shift is not None else None
    with frozen(model):
        with torch.no_grad():
            losses = _candidate_losses(model, x, rotvec, shift, spec)  # (B, K)
        keep = losses.topk(min(n_keep, k), dim=1, largest=False).indices  # (B, n_keep)
        rotvec = rotvec.gather(1, keep[..., None].expand(-1, -1, 3)).contiguous()
        if shift is not None:
            shift = shift.gather(1, keep[..., None].expand(-1, -1, 3)).contiguous()
        best = _Best(
            rotvec[:, 0].clone(), None if shift is None else shift[:, 0].clone(), losses.gather(1, keep[:, :1]).squeeze(1)
        )
        params = [rotvec.requires_grad_(True)] + ([shift.requires_grad_(True)] if shift is not None else [])
        optimiser = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(n_steps):
                loss = _candidate_losses(model, x, rotvec, shift, spec)
                best.update(rotvec.detach(), None if shift is None else shift.detach(), loss.detach())
                optimiser.zero_grad(set_to_none=True)
                loss.sum().backward()  # objects and candidates are independent (eval-mode BN)
                optimiser.step()
        with torch.no_grad():
            best.update(
                rotvec.detach(), None if shift is None else shift.detach(), _candidate_losses(model, x, rotvec, shift, spec)
            )
    return Transform(rotvec_to_matrix(best.rotvec), best.shift), best.loss


def _initial_candidates(b: int, n_restarts: int, max_translation: float, generator: torch.Generator):
    """(B, 24 + n, 3) axis-angle candidates (the 24 cube rotations first), and shifts."""
    cube = _matrix_to_rotvec(cube_rotation_matrices()).expand(b, -1, -1)
    random = _matrix_to_rotvec(random_rotation_matrices(b * n_restarts, generator)).view(b, n_restarts, 3)
    rotvec = torch.cat([cube, random], dim=1)
    if max_translation <= 0:
        return rotvec, None
    shift = (torch.rand(b, n_restarts, 3, generator=generator) * 2 - 1) * max_translation
    return rotvec, torch.cat([torch.zeros(b, N_CUBE_ROTATIONS, 3), shift], dim=1)


def _candidate_losses(model, x, rotvec, shift, spec) -> torch.Tensor:
    """Loss (B, K) of K candidates per object, all B * K in one forward pass."""
    b, k = rotvec.shape[:2]
    transform = Transform(
        rotvec_to_matrix(rotvec.reshape(b * k, 3)),
        None if shift is None else shift.reshape(b * k, 3),
    )
    loss, _ = transformed_loss(model, x.repeat_interleave(k, dim=0), transform, spec)
    return loss.view(b, k)


class _Best:
    """Best (rotvec, shift, loss) per object over (B, K) candidate tensors."""

    def __init__(self, rotvec, shift, loss) -> None:
        self.rotvec, self.shift, self.loss = rotvec, shift, loss

    def update(self, rotvec, shift, loss) -> None:
        value, index = loss.min(dim=1)
        better = value < self.loss
        rows = torch.nonzero(better).squeeze(1)
        self.loss = torch.where(better, value, self.loss)
        self.rotvec[rows] = rotvec[rows, index[rows]]
        if self.shift is not None:
            self.shift[rows] = shift[rows, index[rows]]
