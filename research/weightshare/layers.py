"""The shared layers, in plain torch, and the count of unique parameters.

* ``RepeatConv2d``: a thin conv (out/factor channels), BatchNorm on the thin tensor, then the channel
  repeat ``out.repeat(1, factor, 1, 1)``: ``factor`` filters share one set of weights.
* ``SharedDepthwiseConv2d``: ``n_unique`` depthwise kernels tiled to C channels (channel c uses kernel
  c mod n_unique); ``lightconv=True`` softmax-normalises each kernel over its k*k taps and applies
  DropConnect to the normalised kernels while training (LightConv, Wu et al. 2019, in 2-D).
* ``SharedPointwiseConv2d``: a 1x1 conv whose (C_out, C_in) weight is ``n_unique_in`` columns tiled
  along the input dimension.

Tiling happens in ``forward``: the stored parameters are the unique ones, so ``unique_parameter_count``
never counts a tiled copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvBN",
    "RepeatConv2d",
    "SharedDepthwiseConv2d",
    "SharedPointwiseConv2d",
    "unique_parameter_count",
]


def unique_parameter_count(module: nn.Module) -> int:
    """Parameters of `module`, each stored tensor once: a parameter reached through several modules
    (tied weights) counts once, and tiling (done in forward) adds nothing. Buffers are not counted."""
    seen: set[tuple[int, int]] = set()  # (storage address, offset) of each tensor counted
    total = 0
    for _, parameter in module.named_parameters(remove_duplicate=False):
        key = (parameter.untyped_storage().data_ptr(), int(parameter.storage_offset()))
        if key in seen:
            continue
        seen.add(key)
        total += parameter.numel()
    return total


def _divides(whole: int, part: int, what: str) -> int:
    if part < 1 or whole % part:
        raise ValueError(f"{what}: {part} does not divide {whole}")
    return whole // part


class ConvBN(nn.Module):
    """Conv2d (no bias) then BatchNorm2d: the unit every network here is built of."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class RepeatConv2d(nn.Module):
    """A conv to out/factor channels, BatchNorm on them, then the channels repeated `factor` times.

    Its `conv` and `bn` have the names and shapes of the thin network's ConvBN, so a repeat-shared
    network's state_dict maps onto the thin one's (weightshare.shrink)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, factor: int, stride: int = 1) -> None:
        super().__init__()
        self.factor = factor
        thin = _divides(out_channels, factor, "RepeatConv2d factor")
        self.conv = nn.Conv2d(in_channels, thin, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(thin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).repeat(1, self.factor, 1, 1)


class SharedDepthwiseConv2d(nn.Module):
    """Depthwise k x k conv over `channels` channels with only `n_unique` distinct kernels."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        n_unique: int,
        stride: int = 1,
        lightconv: bool = False,
        dropconnect: float = 0.0,
    ) -> None:
        super().__init__()
        self.copies = _divides(channels, n_unique, "SharedDepthwiseConv2d n_unique")
        if not 0.0 <= dropconnect < 1.0:
            raise ValueError(f"dropconnect must be in [0, 1), got {dropconnect}")
        self.channels, self.stride, self.padding = channels, stride, kernel_size // 2
        self.lightconv, self.dropconnect = lightconv, dropconnect
        self.weight = nn.Parameter(torch.empty(n_unique, 1, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default initialisation

    def kernels(self) -> torch.Tensor:
        """The (n_unique, 1, k, k) kernels as applied: normalised and DropConnect-ed in LightConv form."""
        weight: torch.Tensor = self.weight
        if self.lightconv:
            n, _, k, _ = weight.shape
            weight = F.softmax(weight.view(n, k * k), dim=-1).view_as(weight)
            weight = F.dropout(weight, self.dropconnect, self.training)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.kernels().repeat(self.copies, 1, 1, 1)  # channel c uses kernel c mod n_unique
        return F.conv2d(x, weight, None, self.stride, self.padding, groups=self.channels)


class SharedPointwiseConv2d(nn.Module):
    """1x1 conv from `in_channels` to `out_channels` whose weight has only `n_unique_in` input columns,
    tiled along the input dimension (input channel c uses column c mod n_unique_in)."""

    def __init__(self, in_channels: int, out_channels: int, n_unique_in: int) -> None:
        super().__init__()
        self.copies = _divides(in_channels, n_unique_in, "SharedPointwiseConv2d n_unique_in")
        self.weight = nn.Parameter(torch.empty(out_channels, n_unique_in, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.repeat(1, self.copies, 1, 1))
