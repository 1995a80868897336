"""SpatialTopK: exactly k non-zeros at every location (or per sample, global), the input's values there, the
gradient only through the winners; boosting moves the winners towards rarely winning channels; under BPDA the
forward values stay the hard top-k while the input gradient becomes non-zero where top-k's own is masked."""

from __future__ import annotations

import pytest
import torch
from topk.layers import SpatialTopK, bpda, k_of
from topk.networks import Activation, build_network


def _distinct(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Distinct values (no ties) of both signs: a random permutation, shifted below zero."""
    n = torch.Size(shape).numel()
    return (torch.randperm(n, generator=torch.Generator().manual_seed(seed)).float() - n / 3 + 0.5).view(shape) / n


@pytest.mark.parametrize("frac, channels, k", [(0.05, 40, 2), (0.1, 40, 4), (0.25, 40, 10), (0.05, 8, 1), (1.0, 8, 8)])
def test_each_location_keeps_exactly_k_channels_with_the_input_values(frac: float, channels: int, k: int) -> None:
    x = _distinct((3, channels, 5, 4))
    out = SpatialTopK(frac)(x)
    assert k_of(channels, frac) == k
    nonzero = out != 0
    assert (nonzero.sum(dim=1) == k).all()
    assert torch.equal(out[nonzero], x[nonzero])
    # the kept ones are the k largest at their location, negatives included
    kth = torch.topk(x, k, dim=1).values[:, -1:]
    assert torch.equal(nonzero, x >= kth)
    if frac == 1.0:
        assert (out < 0).any()  # no ReLU inside: negative values win too


def test_the_gradient_flows_only_through_the_winners() -> None:
    x = _distinct((2, 20, 3, 3)).requires_grad_(True)
    out = SpatialTopK(0.25)(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(upstream)
    winners = out.detach() != 0
    assert x.grad is not None
    assert torch.equal(x.grad, torch.where(winners, upstream, torch.zeros_like(upstream)))


def test_the_global_variant_keeps_k_of_the_whole_sample() -> None:
    x = _distinct((3, 8, 4, 4)).requires_grad_(True)
    out = SpatialTopK(0.1, local=False)(x)
    k = k_of(8 * 4 * 4, 0.1)
    nonzero = (out != 0).flatten(1)
    assert (nonzero.sum(dim=1) == k).all()
    assert torch.equal(out[out != 0], x[out != 0])
    assert not ((out != 0).sum(dim=1) == k_of(8, 0.1)).all()  # not per location
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, (out != 0).float())


def test_boosting_picks_by_boosted_score_keeps_raw_values_and_tracks_duty_cycles() -> None:
    layer = SpatialTopK(0.25, channels=4, boost_strength=5.0, duty_cycle_period=10)
    layer.train()
    x = torch.tensor([4.0, 3.0, 2.0, 1.0]).view(1, 4, 1, 1)
    assert torch.equal(layer(x), torch.tensor([4.0, 0, 0, 0]).view(1, 4, 1, 1))  # duty cycles all 0: plain top-1
    assert layer.duty_cycle[0] == 1.0 and (layer.duty_cycle[1:] == 0).all()
    out = layer(x)  # channel 0 won once: exp((0.25 - 1) * 5) = 0.02 pushes it below channel 1
    assert torch.equal(out, torch.tensor([0, 3.0, 0, 0]).view(1, 4, 1, 1))
    layer.eval()
    before = layer.duty_cycle.clone()
    layer(x)
    assert torch.equal(layer.duty_cycle, before)  # evaluation does not learn
    layer.decay_boost()
    assert float(layer.boost_strength) == pytest.approx(4.5)


def test_k_inference_factor_widens_k_in_eval_only() -> None:
    layer = SpatialTopK(0.25, k_inference_factor=1.5)
    x = _distinct((1, 16, 2, 2))
    assert ((layer.train()(x) != 0).sum(dim=1) == 4).all()
    assert ((layer.eval()(x) != 0).sum(dim=1) == 6).all()


@pytest.mark.parametrize("surrogate", ["identity", "soft"])
def test_bpda_keeps_the_forward_and_unmasks_the_input_gradient(surrogate: str) -> None:
    """A loss on a losing channel: top-k's own gradient is exactly zero there (the channel is a constant 0),
    the surrogate's is not; the forward values are those of the hard top-k."""
    layer = SpatialTopK(0.1)
    x = _distinct((2, 20, 3, 3)).requires_grad_(True)
    hard = layer(x)
    losers = hard.detach() == 0
    (hard * losers).sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0

    x2 = x.detach().clone().requires_grad_(True)
    with bpda(layer, surrogate) as swapped:  # type: ignore[arg-type]
        relaxed = layer(x2)
        (relaxed * losers).sum().backward()
    assert swapped == 1 and layer.surrogate is None
    assert torch.allclose(relaxed, hard) and torch.equal(relaxed != 0, hard != 0)
    assert x2.grad is not None and torch.count_nonzero(x2.grad[losers]) > 0.9 * int(losers.sum())


def test_bpda_gives_a_network_input_gradient_where_top_k_passes_none() -> None:
    """A network whose single stage top-k keeps 1 of its channels: the logit of a class read from a losing
    channel has zero input gradient through the hard top-k, non-zero under BPDA."""
    torch.manual_seed(0)
    net = build_network("small_cnn", Activation("topk", frac=0.05, placement="every_relu"), 1, 10, 4, (0.5,), (0.25,)).eval()
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    features = net.features(x)
    dead = (features == 0).flatten(2).all(dim=2)  # (batch, channel) never winning anywhere
    b, c = [int(i) for i in dead.nonzero()[0]]
    features[b, c].sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0
    x.grad = None
    with bpda(net, "identity"):
        net.features(x)[b, c].sum().backward()
    assert torch.count_nonzero(x.grad) > 0


@pytest.mark.parametrize("placement, n_topk", [("stages", 5), ("every_relu", 5 + 2 * 2 * 4)])
def test_preact_resnet18_places_top_k_after_stem_and_stages_or_at_every_relu_too(placement: str, n_topk: int) -> None:
    torch.manual_seed(0)
    act = Activation("topk", frac=0.25, placement=placement)  # type: ignore[arg-type]
    net = build_network("preact_resnet18", act, 3, 10, 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert sum(isinstance(m, SpatialTopK) for m in net.modules()) == n_topk
    relu_net = build_network("preact_resnet18", Activation("relu"), 3, 10, 4, (0.5,) * 3, (0.25,) * 3)
    assert not any(isinstance(m, SpatialTopK) for m in relu_net.modules())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = net(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
