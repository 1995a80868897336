"""Rotation layer and the inner rotation search of the AVAE."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.avae.model import ConvVAE
from trainables.avae.transforms import (
    avae_loss,
    candidate_angles,
    optimise_rotation,
    optimise_rotation_loop,
    rotate,
)
from trainables.data.digits import load_digits_split


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_digits_split(train_subset=40, test_subset=24).x_test


@pytest.fixture
def model() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(latent_dim=6)


def test_rotate_then_inverse_is_identity_in_the_interior(digits):
    theta = torch.linspace(-3.0, 3.0, digits.shape[0])
    back = rotate(rotate(digits, theta), -theta)
    # Bilinear resampling blurs a little, and the digit sits in the central 16x16.
    interior = (slice(None), slice(None), slice(4, 20), slice(4, 20))
    assert (back[interior] - digits[interior]).abs().mean() < 0.03
    assert torch.allclose(back.sum(dim=(1, 2, 3)), digits.sum(dim=(1, 2, 3)), rtol=0.05)


def test_rotate_by_90_degrees_matches_rot90(digits):
    theta = torch.full((digits.shape[0],), math.pi / 2)
    expected = torch.rot90(digits, k=1, dims=(2, 3))
    assert torch.allclose(rotate(digits, theta), expected, atol=1e-5)


def test_rotate_by_zero_is_exact(digits):
    assert torch.allclose(rotate(digits, torch.zeros(digits.shape[0])), digits, atol=1e-6)


def test_candidates_start_with_identity_and_are_evenly_spaced():
    angles = candidate_angles(5, torch.Generator().manual_seed(3))
    assert angles[0] == 0
    steps = torch.diff(angles[1:])
    assert torch.allclose(steps, torch.full_like(steps, 2 * math.pi / 4))
    assert 0 <= angles[1] < 2 * math.pi / 4
    assert candidate_angles(1, torch.Generator()).tolist() == [0.0]


def test_search_is_never_worse_than_identity(model, digits):
    theta, loss = optimise_rotation(model, digits, 8, 5, 0.05, torch.Generator().manual_seed(0))
    with torch.no_grad():
        identity_loss = avae_loss(model, digits, torch.zeros(digits.shape[0]))
        recomputed = avae_loss(model, digits, theta)
    assert theta.shape == loss.shape == (digits.shape[0],)
    assert torch.all(loss <= identity_loss + 1e-3)
    assert torch.allclose(loss, recomputed, rtol=1e-4, atol=1e-3)
    assert not theta.requires_grad and not loss.requires_grad


def test_batched_search_equals_loop_reference(model, digits):
    batched = optimise_rotation(model, digits, 16, 0, 0.05, torch.Generator().manual_seed(7))
    looped = optimise_rotation_loop(model, digits, 16, 0, 0.05, torch.Generator().manual_seed(7))
    assert torch.equal(batched[0], looped[0])
    assert torch.allclose(batched[1], looped[1], rtol=1e-5, atol=1e-3)
    # And with the Adam refinement on top.
    batched = optimise_rotation(model, digits, 16, 3, 0.05, torch.Generator().manual_seed(7))
    looped = optimise_rotation_loop(model, digits, 16, 3, 0.05, torch.Generator().manual_seed(7))
    assert torch.allclose(batched[0], looped[0], atol=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_search_leaves_no_gradients_and_restores_mode(model, digits, training):
    model.train(training)
    model.fc_mu.weight.requires_grad_(False)  # a frozen layer stays frozen
    optimise_rotation(model, digits, 4, 3, 0.05, torch.Generator().manual_seed(0))
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    assert not model.fc_mu.weight.requires_grad
    assert all(p.requires_grad for name, p in model.named_parameters() if name != "fc_mu.weight")


def test_search_under_no_grad_still_refines(model, digits):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        _, refined = optimise_rotation(model, digits, 4, 5, 0.05, generator)
    _, coarse = optimise_rotation(model, digits, 4, 0, 0.05, torch.Generator().manual_seed(0))
    assert torch.all(refined <= coarse + 1e-4)
    assert refined.sum() < coarse.sum()


# ---------------------------------------------------------------------- general affine mode
from trainables.avae.loss import Objective, kl_log_sigma_per_image, kl_per_image  # noqa: E402
from trainables.avae.transforms import (  # noqa: E402
    affine_perturbations,
    candidate_matrices,
    inverse_transform,
    optimise_affine,
    optimise_transform,
    rotation_angle,
    transform_images,
    warp,
)


def _rotation_matrices(theta: torch.Tensor) -> torch.Tensor:
    cos, sin = theta.cos(), theta.sin()
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)


def test_affine_candidates_start_with_identity_and_stay_in_range():
    matrices = candidate_matrices(16, torch.Generator().manual_seed(1))
    assert matrices.shape == (16, 2, 2)
    assert torch.equal(matrices[0], torch.eye(2))
    assert matrices[1:].abs().max() <= 1.5 and matrices[1:].std() > 0.5


def test_warp_with_rotation_matrix_equals_rotate(digits):
    theta = torch.linspace(-3.0, 3.0, digits.shape[0])
    assert torch.allclose(warp(digits, _rotation_matrices(theta)), rotate(digits, theta), atol=1e-5)
    assert torch.allclose(rotation_angle(_rotation_matrices(theta), "affine"), theta, atol=1e-5)


def test_affine_inverse_undoes_the_transform_in_the_interior(digits):
    generator = torch.Generator().manual_seed(2)
    # Mild, well-conditioned matrices (rotation x shear x scale near 1).
    matrices = affine_perturbations(digits.shape[0], generator, 180.0, 15.0, (0.9, 1.1))
    back = inverse_transform(transform_images(digits, matrices, "affine"), matrices, "affine")
    interior = (slice(None), slice(None), slice(4, 20), slice(4, 20))
    assert (back[interior] - digits[interior]).abs().mean() < 0.05


def test_singular_candidates_give_finite_losses(model, digits):
    singular = torch.zeros(digits.shape[0], 2, 2)
    loss = avae_loss(model, digits, singular, transform="affine")
    assert torch.isfinite(loss).all()


def test_affine_search_is_never_worse_than_identity(model, digits):
    params, loss = optimise_affine(model, digits, 16, 5, 0.05, torch.Generator().manual_seed(0))
    identity = torch.eye(2).expand(digits.shape[0], 2, 2)
    with torch.no_grad():
        identity_loss = avae_loss(model, digits, identity, transform="affine")
        recomputed = avae_loss(model, digits, params, transform="affine")
    assert params.shape == (digits.shape[0], 2, 2) and loss.shape == (digits.shape[0],)
    assert torch.all(loss <= identity_loss + 1e-3)
    assert torch.allclose(loss, recomputed, rtol=1e-4, atol=1e-3)
    assert not params.requires_grad and not loss.requires_grad
    # Adam actually moved the matrices away from the candidates for some images.
    assert loss.sum() < identity_loss.sum()


@pytest.mark.parametrize("training", [True, False])
def test_affine_search_leaves_no_gradients_and_restores_mode(model, digits, training):
    model.train(training)
    optimise_affine(model, digits, 4, 3, 0.05, torch.Generator().manual_seed(0))
    assert model.training is training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_affine_batched_search_equals_loop_reference(model, digits):
    kwargs = dict(n_candidates=16, n_steps=0, lr=0.05)
    batched = optimise_transform(model, digits, "affine", generator=torch.Generator().manual_seed(3), **kwargs)
    looped = optimise_transform(model, digits, "affine", generator=torch.Generator().manual_seed(3), batched=False, **kwargs)
    assert torch.equal(batched[0], looped[0])
    assert torch.allclose(batched[1], looped[1], rtol=1e-5, atol=1e-3)


def test_faithful_objectives(model, digits):
    mu, log_sigma = torch.randn(5, 6), torch.randn(5, 6) * 0.3
    # log sigma read as log sigma == the usual KL with log variance 2 log sigma
    assert torch.allclose(kl_log_sigma_per_image(mu, log_sigma), kl_per_image(mu, 2 * log_sigma))
    theta = torch.full((digits.shape[0],), 0.7)
    with torch.no_grad():
        default = avae_loss(model, digits, theta)
        for objective in (
            Objective(recon="mse_sum_faithful"),
            Objective(kl="log_sigma_faithful"),
            Objective("mse_sum_faithful", "log_sigma_faithful"),
        ):
            loss = avae_loss(model, digits, theta, objective=objective)
            assert torch.isfinite(loss).all() and not torch.allclose(loss, default)
        mse = avae_loss(model, digits, None, objective=Objective(recon="mse_sum_faithful"))
    # Irreducible floor: the zero background normalises to -0.4242, the sigmoid is > 0.
    background = (digits[:, 0] == 0).flatten(1).sum(1)
    assert torch.all(mse > 0.4242**2 * background * 0.99)


def test_faithful_search_is_never_worse_than_identity(model, digits):
    objective = Objective("mse_sum_faithful", "log_sigma_faithful")
    _, loss = optimise_rotation(model, digits, 8, 3, 0.05, torch.Generator().manual_seed(0), objective=objective)
    with torch.no_grad():
        identity = avae_loss(model, digits, torch.zeros(digits.shape[0]), objective=objective)
    assert torch.all(loss <= identity + 1e-3)


@pytest.mark.parametrize("transform", ["rotation", "affine"])
def test_bf16_screening_is_exact_float32_and_never_worse_than_identity(model, digits, transform):
    params, loss = optimise_transform(
        model,
        digits,
        transform,
        16,
        0,
        0.05,
        torch.Generator().manual_seed(5),
        screen_precision="bfloat16",
    )
    assert loss.dtype == torch.float32 and params.dtype == torch.float32
    with torch.no_grad():
        recomputed = avae_loss(model, digits, params, transform=transform)
        identity = avae_loss(model, digits, candidate_params_identity(transform, digits.shape[0]), transform=transform)
        full = optimise_transform(model, digits, transform, 16, 0, 0.05, torch.Generator().manual_seed(5))[1]
    assert torch.allclose(loss, recomputed, rtol=1e-5, atol=1e-4)
    assert torch.all(loss <= identity + 1e-4)
    # bf16 ranking picks (nearly) the float32 winner: within a fraction of a nat on average.
    assert (loss - full).mean() < 0.5


def candidate_params_identity(transform, batch):
    from trainables.avae.transforms import identity_params

    return identity_params(batch, transform)
