"""Evaluation of the 3D AVAE: presentation of test objects, reconstruction metrics,
and the per-class orientation consistency of the 24-way search."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.avae.transforms import frozen
from trainables.avae3d.config import AVAE3DConfig
from trainables.avae3d.loss import recon_from_probs
from trainables.avae3d.model import VoxelVAE
from trainables.avae3d.rotations import (
    N_CUBE_ROTATIONS,
    affine_transform,
    composition_table,
    random_rotation_matrices,
    rotate_cube,
)
from trainables.avae3d.search import (
    LossSpec,
    exhaustive_search,
    object_loss,
    restarts_search,
    transformed_loss,
)

__all__ = [
    "Reconstruction",
    "iou_per_object",
    "orientation_consistency",
    "present",
    "reconstruct",
    "reconstruction_metrics",
]

_IOU_THRESHOLD = 0.5


def present(x: torch.Tensor, how: str, cfg: AVAE3DConfig, generator: torch.Generator) -> torch.Tensor:
    """Objects in the orientation ``how`` (none | cube24 | free), randomness from ``generator``."""
    n = x.shape[0]
    if how == "cube24":
        return rotate_cube(x, torch.randint(N_CUBE_ROTATIONS, (n,), generator=generator))
    if how == "free":
        rotation = random_rotation_matrices(n, generator, cfg.rotation_sampling)
        shift = None
        if cfg.max_translation > 0:
            shift = (torch.rand(n, 3, generator=generator) * 2 - 1) * cfg.max_translation
            shift = shift.to(x.device)
        return affine_transform(x, rotation.to(x.device), shift)
    return x


@dataclass(frozen=True)
class Reconstruction:
    """Per-object loss (B,), Bernoulli means and the target they are compared with."""

    loss: torch.Tensor
    probs: torch.Tensor
    target: torch.Tensor


def reconstruct(
    model: VoxelVAE,
    x: torch.Tensor,
    method: str,
    loss_spec: LossSpec,
    search_spec: LossSpec,
    cfg: AVAE3DConfig,
    generator: torch.Generator,
) -> Reconstruction:
    """Deterministic (z = mu) reconstruction of x after the search ``method``."""
    with frozen(model), torch.no_grad():
        if method == "restarts":
            transform, _ = restarts_search(
                model,
                x,
                search_spec,
                generator,
                cfg.n_restarts,
                cfg.n_keep,
                cfg.opt_steps,
                cfg.opt_lr,
                cfg.max_translation,
            )
            with torch.no_grad():
                loss, probs = transformed_loss(model, x, transform, loss_spec)
            return Reconstruction(loss, probs, x)
        if method == "exhaustive24":
            index, _ = exhaustive_search(model, x, search_spec)
            x = rotate_cube(x, index)
        loss, logits, _ = object_loss(model, x, loss_spec)
        return Reconstruction(loss, torch.sigmoid(logits), x)


def iou_per_object(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Voxel IoU at threshold 0.5 per object (B,); two empty grids count as 1."""
    pred, true = probs.flatten(1) >= _IOU_THRESHOLD, target.flatten(1) >= _IOU_THRESHOLD
    inter = (pred & true).sum(1).float()
    union = (pred | true).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def reconstruction_metrics(r: Reconstruction) -> dict[str, torch.Tensor]:
    """Per-object loss, BCE and MSE (summed over voxels) and IoU, each (B,)."""
    return {
        "val_loss": r.loss,
        "val_bce": recon_from_probs(r.probs, r.target, "bce"),
        "val_mse": (r.probs - r.target).pow(2).flatten(1).sum(1),
        "val_iou": iou_per_object(r.probs, r.target),
    }


def orientation_consistency(
    model: VoxelVAE,
    x: torch.Tensor,
    labels: torch.Tensor,
    spec: LossSpec,
    generator: torch.Generator,
    batch_size: int,
) -> float:
    """Mean over classes of the fraction of objects whose recovered canonical rotation
    ``R_model R_data`` equals the class's modal one (objects shown in random cube
    orientations R_data; R_model from the exhaustive 24-way search)."""
    data_rotation = torch.randint(N_CUBE_ROTATIONS, (x.shape[0],), generator=generator)
    chosen = []
    for start in range(0, x.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        index, _ = exhaustive_search(model, rotate_cube(x[rows], data_rotation[rows]), spec)
        chosen.append(index.cpu())
    composite = composition_table()[torch.cat(chosen), data_rotation]
    fractions = []
    for label in labels.unique():
        counts = torch.bincount(composite[labels == label], minlength=N_CUBE_ROTATIONS)
        fractions.append(counts.max().item() / counts.sum().item())
    return float(sum(fractions) / len(fractions))
