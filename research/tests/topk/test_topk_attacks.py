"""The attacks: FGSM with epsilon 0 changes nothing; FGSM and PGD stay inside the epsilon ball and [0, 1] and
raise the loss; the transfer path crafts on the source and scores the target; noise is seeded and clipped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from topk.attacks import accuracy, adversarial_accuracy, fgsm, noisy, pgd
from topk.layers import SpatialTopK
from topk.networks import Activation, build_network
from torch import nn


def _model(activation: str = "topk") -> nn.Module:
    torch.manual_seed(0)
    return build_network("small_cnn", Activation(activation, frac=0.25), 1, 10, 4, (0.3,), (0.3,)).eval()  # type: ignore[arg-type]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(16, 1, 16, 16, generator=generator)
    x[:, :, :2] = 0.0  # pixels on the box's edges, as digits have
    x[:, :, -2:] = 1.0
    return x, torch.randint(0, 10, (16,), generator=generator)


def test_fgsm_with_epsilon_zero_changes_nothing() -> None:
    x, y = _batch()
    assert torch.equal(fgsm(_model(), x, y, 0.0), x)
    assert torch.equal(pgd(_model(), x, y, 0.0, steps=3, step_size=0.0, random_start=True), x)


@pytest.mark.parametrize("surrogate", [None, "identity", "soft"])
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_pgd_stays_inside_the_epsilon_ball_and_the_box_and_raises_the_loss(eps: float, surrogate: str | None) -> None:
    model, (x, y) = _model(), _batch()
    x_adv = pgd(model, x, y, eps, steps=5, step_size=eps / 2, generator=torch.Generator().manual_seed(0), surrogate=surrogate)  # type: ignore[arg-type]
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv != x).any()
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    assert all(m.surrogate is None for m in model.modules() if isinstance(m, SpatialTopK))


def test_fgsm_moves_every_free_pixel_by_epsilon_within_the_box() -> None:
    model, (x, y) = _model("relu"), _batch()
    x_adv = fgsm(model, x, y, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    inside = (x > 0.1) & (x < 0.9)
    assert torch.allclose((x_adv - x).abs()[inside], torch.full_like(x[inside], 0.1), atol=1e-6) or (x_adv == x).any()


def test_pgd_random_start_is_drawn_from_the_given_generator() -> None:
    model, (x, y) = _model(), _batch()
    first = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(7))
    again = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(7))
    other = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_transfer_crafts_on_the_source_and_scores_the_target() -> None:
    target, source, (x, y) = _model("topk"), _model("relu"), _batch()
    crafted: list[torch.Tensor] = []

    def on_source(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        crafted.append(pgd(source, xb, yb, 0.1, 2, 0.05, generator=torch.Generator().manual_seed(0)))
        return crafted[-1]

    got = adversarial_accuracy(target, x, y, on_source, batch_size=8, source=source)
    assert len(crafted) == 2
    assert got == accuracy(target, torch.cat(crafted), y)
    assert not target.training and not source.training


def test_noise_is_seeded_and_clipped() -> None:
    x, _ = _batch()
    a, b = noisy(x, 0.3, torch.Generator().manual_seed(1)), noisy(x, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0.0 and a.max() <= 1.0 and not torch.equal(a, x)
