"""Transform layer A (rotation or general 2x2 affine), its inverse, the AVAE loss, and the
inner search for the transform.

A(x) resamples images with ``affine_grid`` + bilinear ``grid_sample`` (zero padding,
``align_corners=False``). Parameters per image:

* ``rotation``: theta (B,) radians, matrix ``[[cos, -sin], [sin, cos]]``; A^-1 = rotation by -theta.
* ``affine``: the four entries of the 2x2 matrix M (B, 2, 2), no translation (the
  original's ``optimize_affine``); A^-1 uses the matrix inverse M^-1.

The AVAE loss of an image x at parameters p reconstructs x itself from the transformed
input: ``recon(A_p^-1(sigmoid(dec(z))), x) + KL`` with ``z = enc(A_p(x))``
(recon and KL as chosen by :class:`~trainables.avae.loss.Objective`).

:func:`optimise_transform` is the one inner optimisation (training and test time):
candidates including the identity -> the best per image -> Adam steps on the parameters,
keeping the best seen per image; the weights get no gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F

from trainables.avae.loss import DEFAULT_OBJECTIVE, Objective
from trainables.avae.model import ConvVAE

__all__ = [
    "AFFINE_ENTRY_RANGE",
    "ScreenPrecision",
    "TransformKind",
    "affine_perturbations",
    "avae_loss",
    "candidate_angles",
    "candidate_matrices",
    "candidate_params",
    "frozen",
    "identity_params",
    "inverse_transform",
    "optimise_affine",
    "optimise_rotation",
    "optimise_rotation_loop",
    "optimise_transform",
    "rotate",
    "rotation_angle",
    "transform_images",
    "warp",
]

TransformKind = Literal["rotation", "affine"]
ScreenPrecision = Literal["float32", "bfloat16"]

AFFINE_ENTRY_RANGE = 1.5  # random candidate entries ~ U(-1.5, 1.5) (EXPERIMENTS.md 2.3)
_MIN_ABS_DET = 1e-2  # random 2x2 candidates can be (nearly) singular
# Rows (images x candidates) per batched forward pass. On a CPU the pass is conv-bound and
# ~512 rows keep the activations in cache (a design choice: the one-off timings behind it came
# from no script and left docs/benchmarks.md). On a GPU, bigger passes fill the device: all
# 5,760 rows in one pass ran 9-11x faster than the per-candidate loop on an H200 (docs/benchmarks.md).
_CANDIDATE_ROWS = {"cpu": 512}
_CANDIDATE_ROWS_DEFAULT = 32768


# ---------------------------------------------------------------------- the layer A
def rotate(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate each image (B, C, H, W) about its centre by theta (B,) radians."""
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(theta)
    matrix = torch.stack([torch.stack([cos, -sin, zero], dim=1), torch.stack([sin, cos, zero], dim=1)], dim=1)
    grid = F.affine_grid(matrix.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample each image through its 2x2 sampling matrix (B, 2, 2), no translation."""
    theta = F.pad(matrix, (0, 1))  # (B, 2, 3), zero translation column
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _safe_inverse(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of (B, 2, 2) matrices via the adjugate, |det| clamped away from 0."""
    a, b = matrix[:, 0, 0], matrix[:, 0, 1]
    c, d = matrix[:, 1, 0], matrix[:, 1, 1]
    det = a * d - b * c
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    det = sign * det.abs().clamp_min(_MIN_ABS_DET)
    adjugate = torch.stack([torch.stack([d, -b], dim=1), torch.stack([-c, a], dim=1)], dim=1)
    return adjugate / det.view(-1, 1, 1)


def transform_images(x: torch.Tensor, params: torch.Tensor, kind: TransformKind) -> torch.Tensor:
    """A_params(x): rotation by theta (B,) or resampling through M (B, 2, 2)."""
    if kind == "rotation":
        return rotate(x, params)
    return warp(x, params)


def inverse_transform(x: torch.Tensor, params: torch.Tensor, kind: TransformKind) -> torch.Tensor:
    """A_params^-1(x): rotation by -theta, or resampling through M^-1."""
    if kind == "rotation":
        return rotate(x, -params)
    return warp(x, _safe_inverse(params))


def rotation_angle(params: torch.Tensor, kind: TransformKind) -> torch.Tensor:
    """The rotation (radians, (B,)) in the parameters: theta, or the angle of the rotation
    closest to M (polar decomposition), atan2(m10 - m01, m00 + m11)."""
    if kind == "rotation":
        return params
    return torch.atan2(params[:, 1, 0] - params[:, 0, 1], params[:, 0, 0] + params[:, 1, 1])


def identity_params(batch: int, kind: TransformKind, device=None) -> torch.Tensor:
    if kind == "rotation":
        return torch.zeros(batch, device=device)
    return torch.eye(2, device=device).expand(batch, 2, 2).clone()


def affine_perturbations(
    batch: int,
    generator: torch.Generator,
    max_rotation_deg: float = 180.0,
    max_shear_deg: float = 55.0,
    scale_range: tuple[float, float] = (0.75, 1.5),
) -> torch.Tensor:
    """Sampling matrices (B, 2, 2) of random affine perturbations (EXPERIMENTS.md 2.5):
    the image is rotated by U(+-180 deg), sheared along x by U(+-55 deg) and scaled by
    U(0.75, 1.5); the returned matrix is the inverse image map, ready for :func:`warp`."""
    u = torch.rand(batch, 3, generator=generator)
    angle = torch.deg2rad((2 * u[:, 0] - 1) * max_rotation_deg)
    shear = torch.deg2rad((2 * u[:, 1] - 1) * max_shear_deg)
    scale = scale_range[0] + (scale_range[1] - scale_range[0]) * u[:, 2]
    cos, sin, zero, one = angle.cos(), angle.sin(), torch.zeros(batch), torch.ones(batch)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shearing = torch.stack([torch.stack([one, shear.tan()], 1), torch.stack([zero, one], 1)], 1)
    image_map = scale.view(-1, 1, 1) * rotation @ shearing
    return torch.linalg.inv(image_map)


# ---------------------------------------------------------------------- the loss
def avae_loss(
    model: ConvVAE,
    x: torch.Tensor,
    theta: torch.Tensor | None,
    noise: torch.Tensor | None = None,
    *,
    transform: TransformKind = "rotation",
    objective: Objective = DEFAULT_OBJECTIVE,
) -> torch.Tensor:
    """Per-image loss (B,) of reconstructing x through A_theta; theta=None is the plain VAE.

    ``theta``: (B,) angles for ``transform="rotation"``, (B, 2, 2) matrices for "affine".
    ``noise`` (B, L) ~ N(0, I) samples z = mu + sigma * noise; None uses z = mu.
    ``x`` is in [0, 1]; ``objective`` decides the loss terms (and normalisation).
    """
    target = objective.prepare(x)
    x_in = target if theta is None else transform_images(target, theta, transform)
    mu, logvar = model.encode(x_in)
    z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
    logits = model.decode(z)
    if theta is None:
        recon = objective.recon_from_logits(logits, target)
    else:
        recon = objective.recon_from_probs(inverse_transform(torch.sigmoid(logits), theta, transform), target)
    return recon + objective.kl_term(mu, logvar)


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


# ---------------------------------------------------------------------- candidates
def candidate_angles(n_candidates: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """Identity, then n-1 angles evenly spaced over 2*pi with one random common offset (K,)."""
    n_others = n_candidates - 1
    if n_others == 0:
        return torch.zeros(1, device=device)
    spacing = 2 * math.pi / n_others
    offset = torch.rand((), generator=generator) * spacing
    others = offset + spacing * torch.arange(n_others, dtype=torch.float32)
    return torch.cat([torch.zeros(1), others]).to(device)


def candidate_matrices(
    n_candidates: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    entry_range: float = AFFINE_ENTRY_RANGE,
) -> torch.Tensor:
    """Identity, then n-1 random 2x2 matrices with entries ~ U(-r, r) (K, 2, 2)."""
    others = (2 * torch.rand(n_candidates - 1, 2, 2, generator=generator) - 1) * entry_range
    return torch.cat([torch.eye(2).unsqueeze(0), others]).to(device)


def candidate_params(kind: TransformKind, n_candidates: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """The candidate set of the search, identity first: (K,) or (K, 2, 2)."""
    if kind == "rotation":
        return candidate_angles(n_candidates, generator, device or "cpu")
    return candidate_matrices(n_candidates, generator, device or "cpu")


# ---------------------------------------------------------------------- the search
_Search = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _best_candidates(
    model: ConvVAE,
    x: torch.Tensor,
    candidates: torch.Tensor,
    kind: TransformKind = "rotation",
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All K candidates of all B images batched (one pass per <= 512 rows on a CPU;
    rows are image-major: b*K .. b*K + K-1); best (params, loss) per image."""
    k = candidates.shape[0]
    rows = _CANDIDATE_ROWS.get(x.device.type, _CANDIDATE_ROWS_DEFAULT)
    per_pass = max(1, rows // k)
    losses = []
    for chunk in torch.split(x, per_pass):
        x_rep = chunk.repeat_interleave(k, dim=0)
        params = candidates.repeat((chunk.shape[0],) + (1,) * (candidates.dim() - 1))
        loss = avae_loss(model, x_rep, params, transform=kind, objective=objective)
        losses.append(loss.view(chunk.shape[0], k))
    best_loss, best_index = torch.cat(losses).min(dim=1)
    return candidates[best_index], best_loss


def _best_candidates_loop(
    model: ConvVAE,
    x: torch.Tensor,
    candidates: torch.Tensor,
    kind: TransformKind = "rotation",
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`_best_candidates`: one forward pass per candidate (slow loop)."""
    batch = x.shape[0]
    losses = torch.stack(
        [avae_loss(model, x, c.expand((batch,) + c.shape), transform=kind, objective=objective) for c in candidates],
        dim=1,
    )
    best_loss, best_index = losses.min(dim=1)
    return candidates[best_index], best_loss


def _screen(
    search: _Search,
    model: ConvVAE,
    x: torch.Tensor,
    candidates: torch.Tensor,
    kind: TransformKind,
    objective: Objective,
    precision: ScreenPrecision,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best candidate per image. ``bfloat16``: rank the candidates under bf16 autocast
    (about 2x faster convolutions on CPUs with AVX512-BF16 / AMX, and on GPUs), then
    recompute the winner and the identity (candidate 0) in float32 and keep the better,
    so the result is exact float32 and never worse than the identity."""
    if precision == "float32":
        return search(model, x, candidates, kind, objective)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
        winner, _ = search(model, x, candidates, kind, objective)
    identity = candidates[:1].expand_as(winner)
    winner_loss = avae_loss(model, x, winner, transform=kind, objective=objective)
    identity_loss = avae_loss(model, x, identity, transform=kind, objective=objective)
    use_identity = identity_loss <= winner_loss
    mask = use_identity.view((-1,) + (1,) * (winner.dim() - 1))
    return torch.where(mask, identity, winner), torch.where(use_identity, identity_loss, winner_loss)


def _refine(
    model: ConvVAE,
    x: torch.Tensor,
    params0: torch.Tensor,
    loss0: torch.Tensor,
    n_steps: int,
    lr: float,
    kind: TransformKind = "rotation",
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the per-image parameters, keeping the best (params, loss) seen per image."""
    best_params, best_loss = params0.clone(), loss0.clone()
    if n_steps == 0:
        return best_params, best_loss
    params = params0.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([params], lr=lr)

    def loss_at(p: torch.Tensor) -> torch.Tensor:
        return avae_loss(model, x, p, transform=kind, objective=objective)

    with torch.enable_grad():
        for _ in range(n_steps):
            loss = loss_at(params)
            _keep_better(best_params, best_loss, params.detach(), loss.detach())
            optimiser.zero_grad(set_to_none=True)
            # Images are independent (z = mu, no batch norm), so the gradient of the
            # sum is the per-image gradient.
            loss.sum().backward()
            optimiser.step()
    with torch.no_grad():
        _keep_better(best_params, best_loss, params.detach(), loss_at(params))
    return best_params, best_loss


def _keep_better(best_params: torch.Tensor, best_loss: torch.Tensor, params: torch.Tensor, loss: torch.Tensor) -> None:
    better = loss < best_loss
    best_params[better] = params[better]
    best_loss[better] = loss[better]


def optimise_transform(
    model: ConvVAE,
    x: torch.Tensor,
    transform: TransformKind,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
    *,
    objective: Objective = DEFAULT_OBJECTIVE,
    batched: bool = True,
    screen_precision: ScreenPrecision = "float32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best transform per image: (params, per-image loss (B,)), both detached.

    Candidates (identity first; drawn from the CPU ``generator``): for "rotation" the
    identity and n-1 evenly spaced angles with a random common offset -> theta (B,);
    for "affine" the identity and n-1 random 2x2 matrices, entries ~ U(-1.5, 1.5) ->
    M (B, 2, 2). All candidates of all images are evaluated in batched passes without
    autograd (``batched=False``: a Python loop over candidates, the slow reference), the
    best is kept per image, then ``n_steps`` of Adam(lr) on the parameters track the best
    per image. The returned loss is never worse than the identity's. The weights get no
    gradients; train/eval mode and ``requires_grad`` flags are restored.
    ``screen_precision="bfloat16"`` ranks the candidates under bf16 autocast (see
    :func:`_screen`); the refinement and the returned losses stay float32.
    """
    search: _Search = _best_candidates if batched else _best_candidates_loop
    candidates = candidate_params(transform, n_candidates, generator, x.device)
    with frozen(model):
        with torch.inference_mode():
            params0, loss0 = _screen(search, model, x, candidates, transform, objective, screen_precision)
        # Leave inference mode: the refinement needs ordinary (autograd-able) tensors.
        params0, loss0 = params0.clone(), loss0.clone()
        return _refine(model, x, params0, loss0, n_steps, lr, transform, objective)


def optimise_rotation(
    model: ConvVAE,
    x: torch.Tensor,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`optimise_transform` for rotations: (theta (B,) radians, per-image loss (B,))."""
    return optimise_transform(model, x, "rotation", n_candidates, n_steps, lr, generator, objective=objective)


def optimise_rotation_loop(
    model: ConvVAE,
    x: torch.Tensor,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`optimise_rotation` with a Python loop over candidates (slow)."""
    return optimise_transform(
        model,
        x,
        "rotation",
        n_candidates,
        n_steps,
        lr,
        generator,
        objective=objective,
        batched=False,
    )


def optimise_affine(
    model: ConvVAE,
    x: torch.Tensor,
    n_candidates: int,
    n_steps: int,
    lr: float,
    generator: torch.Generator,
    objective: Objective = DEFAULT_OBJECTIVE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`optimise_transform` for general 2x2 matrices: (M (B, 2, 2), loss (B,))."""
    return optimise_transform(model, x, "affine", n_candidates, n_steps, lr, generator, objective=objective)
