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
