"""Post-training uniform symmetric weight quantization, per tensor or per output channel.

b bits give the integer levels -q..q with q = 2**(b-1) - 1 (127 for 8 bits, 7 for 4: symmetric, so zero is
exact and a pruned weight stays zero). The step is scale = max|w| / q over the tensor (or over each output
channel, dim 0); w -> round(w / scale) * scale. Nothing is clipped (the largest |w| maps to q exactly), so
every weight is off by at most half a step. Applied to the prunable weights (prune.prunable_weights); biases
and BatchNorm stay in float32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pruning.prune import prunable_weights

__all__ = ["GRANULARITIES", "quantize_model", "quantize_tensor", "quantized_bits"]

GRANULARITIES = ("tensor", "channel")


def quantize_tensor(weight: torch.Tensor, bits: int, granularity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantized weight, scale): scale is a 0-d tensor (per tensor) or one per output channel, shaped to
    broadcast against `weight`."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    levels = 2 ** (bits - 1) - 1
    w = weight.detach()
    if granularity == "tensor":
        peak = w.abs().max()
    else:
        peak = w.abs().flatten(1).max(dim=1).values.view(-1, *([1] * (w.dim() - 1)))
    scale = torch.where(peak > 0, peak / levels, torch.ones_like(peak))  # an all-zero tensor or channel stays 0
    q = torch.clamp(torch.round(w / scale), -levels, levels)
    return q * scale, scale


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int, granularity: str) -> tuple[nn.Module, int]:
    """A copy of `model` with every prunable weight quantized, and the number of scales stored."""
    quantized = copy.deepcopy(model)
    n_scales = 0
    for _, weight in prunable_weights(quantized):
        dequantized, scale = quantize_tensor(weight, bits, granularity)
        weight.copy_(dequantized)
        n_scales += scale.numel()
    return quantized, n_scales


def quantized_bits(nonzero_prunable: int, nonzero_other: int, bits: int, n_scales: int) -> int:
    """Bits to store the model: its non-zero quantized weights at `bits` each, the float32 scales, the other
    (dense, float32) parameters. Sparse-index overhead is not counted (the same for every bit width)."""
    return nonzero_prunable * bits + 32 * (n_scales + nonzero_other)
