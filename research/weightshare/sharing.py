"""Which convolutions share weights, and how: the one place a network asks for its conv units.

``none`` full convs; ``thin`` fewer channels (the baseline weight sharing must beat); ``repeat``
RepeatConv2d, with the projection shortcut repeated too unless ``repeat_shortcut`` is off (the
original's forgotten-shortcut variant); ``depthwise`` / ``pointwise`` shared kernels / columns in the
separable convs. Sharing applies to the shared stages only (ResNets: stages 2 and up; separable nets:
the light blocks); the others are built with ``Sharing()`` (none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from weightshare.layers import ConvBN, RepeatConv2d, SharedDepthwiseConv2d, SharedPointwiseConv2d

__all__ = ["SHARING_KINDS", "SepConvBN", "Sharing", "SharingKind"]

SharingKind = Literal["none", "thin", "repeat", "depthwise", "pointwise"]
SHARING_KINDS: tuple[str, ...] = ("none", "thin", "repeat", "depthwise", "pointwise")


@dataclass(frozen=True)
class Sharing:
    kind: SharingKind = "none"
    factor: int = 1
    repeat_shortcut: bool = True
    lightconv: bool = False
    dropconnect: float = 0.0

    def width(self, channels: int) -> int:
        """Channels of a shared stage: fewer for `thin`, the full count otherwise."""
        return channels // self.factor if self.kind == "thin" else channels

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Module:
        """A conv + BN of a residual block: RepeatConv2d under `repeat`, else ConvBN."""
        if self.kind == "repeat":
            return RepeatConv2d(in_channels, out_channels, kernel_size, self.factor, stride)
        return ConvBN(in_channels, out_channels, kernel_size, stride)

    def shortcut(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        """The 1x1 projection shortcut: repeated like the convs, or full width if `repeat_shortcut` is off."""
        if self.kind == "repeat" and not self.repeat_shortcut:
            return ConvBN(in_channels, out_channels, 1, stride)
        return self.conv(in_channels, out_channels, 1, stride)

    def depthwise(self, channels: int, stride: int = 1) -> nn.Module:
        if self.kind == "depthwise":
            n_unique = channels // self.factor
            return SharedDepthwiseConv2d(channels, 3, n_unique, stride, self.lightconv, self.dropconnect)
        return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)

    def pointwise(self, in_channels: int, out_channels: int) -> nn.Module:
        if self.kind == "pointwise":
            return SharedPointwiseConv2d(in_channels, out_channels, in_channels // self.factor)
        return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class SepConvBN(nn.Module):
    """Separable conv (depthwise 3x3, then pointwise 1x1) and BatchNorm, as in Xception."""

    def __init__(self, in_channels: int, out_channels: int, sharing: Sharing, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = sharing.depthwise(in_channels, stride)
        self.pointwise = sharing.pointwise(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))
