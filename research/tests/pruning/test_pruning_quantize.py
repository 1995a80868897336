"""Uniform symmetric weight quantization: every weight within half a step of its original, per tensor and per
channel, at 8 and 4 bits; zero stays zero; at most 2**(b-1)-1 levels each side; the model copy and its bits."""

from __future__ import annotations

import pytest
import torch
from pruning.networks import SmallCNN
from pruning.prune import count_nonzero, global_magnitude_prune, prunable_weights
from pruning.quantize import quantize_model, quantize_tensor, quantized_bits


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (10, 64)])
def test_round_trip_within_half_a_step(bits: int, granularity: str, shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(bits)
    weight = torch.randn(shape, generator=generator) * torch.logspace(-3, 0, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    weight[0].zero_()  # an all-zero channel
    weight[1].view(-1)[::3] = 0.0  # pruned weights
    dequantized, scale = quantize_tensor(weight, bits, granularity)
    levels = 2 ** (bits - 1) - 1
    error = (dequantized - weight).abs()
    assert bool((error <= scale / 2 * (1 + 1e-5)).all()), float((error / scale).max())
    q = dequantized / scale
    assert bool((q.round() - q).abs().max() < 1e-3) and int(q.round().abs().max()) == levels  # integer levels, top one used
    assert bool((dequantized[weight == 0] == 0).all())  # symmetric: zero is exact, pruned weights stay pruned
    if granularity == "channel":
        assert scale.shape == (shape[0],) + (1,) * (len(shape) - 1)
        # per channel is never coarser than per tensor (channel 0 is all zero: its placeholder scale is unused)
        _, tensor_scale = quantize_tensor(weight, bits, "tensor")
        assert bool((scale[1:] <= tensor_scale).all()) and bool((scale[1:] < scale[-1:] * 1.01).any())
    else:
        assert scale.numel() == 1
    assert len({round(v, 6) for v in (dequantized / scale).round().flatten().tolist()}) <= 2 * levels + 1


def test_the_model_copy_and_its_bits() -> None:
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    global_magnitude_prune(model, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized, n_scales = quantize_model(model, 4, "channel")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert n_scales == sum(w.shape[0] for _, w in prunable_weights(model))
    assert count_nonzero(quantized)[0] <= count_nonzero(model)[0]
    prunable, other = count_nonzero(model)
    assert quantized_bits(prunable, other, 4, n_scales) == 4 * prunable + 32 * (n_scales + other)
    with pytest.raises(ValueError, match="bits must be in 2..16"):
        quantize_tensor(torch.ones(3), 1, "tensor")
