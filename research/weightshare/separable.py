"""Xception-style networks of separable convs, sharing only in the "light" blocks: a small one for CPU
(digits, MNIST) and a CIFAR Xception (stem 3x3 stride 1, entry blocks to 512 channels, 8 middle blocks
of 512, an exit block to 1024, separable convs to 1536 and 2048)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightshare.layers import ConvBN
from weightshare.sharing import SepConvBN, Sharing

__all__ = ["SepBlock", "SeparableNet", "small_separable", "xception"]


class SepBlock(nn.Module):
    """`reps` x (ReLU, SepConvBN), a 3x3/2 max-pool when strided, plus a (1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int, sharing: Sharing) -> None:
        super().__init__()
        convs, channels = [], in_channels
        for _ in range(reps):
            convs += [nn.ReLU(), SepConvBN(channels, out_channels, sharing)]
            channels = out_channels
        if stride != 1:
            convs.append(nn.MaxPool2d(3, stride, 1))
        self.body = nn.Sequential(*convs)
        same = stride == 1 and in_channels == out_channels
        self.shortcut = nn.Identity() if same else ConvBN(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


# (out_channels, reps, stride, light): one row per block
Layout = tuple[tuple[int, int, int, bool], ...]


class SeparableNet(nn.Module):
    def __init__(
        self, stem: tuple[int, ...], layout: Layout, head: tuple[int, ...], sharing: Sharing, in_channels: int, n_classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in stem:
            layers += [ConvBN(channels, width, 3), nn.ReLU()]
            channels = width
        for width, reps, stride, light in layout:
            block_sharing = sharing if light else Sharing()
            width = block_sharing.width(width)
            layers.append(SepBlock(channels, width, reps, stride, block_sharing))
            channels = width
        for width in head:
            layers += [SepConvBN(channels, width, Sharing()), nn.ReLU()]
            channels = width
        if not head:
            layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def small_separable(sharing: Sharing, in_channels: int, n_classes: int, blocks: int = 1) -> SeparableNet:
    """Stem 32, a plain block to 64 (stride 2), light blocks: to 128 (stride 2) then `blocks` x 128."""
    layout: Layout = ((64, 2, 2, False), (128, 2, 2, True), *((128, 2, 1, True),) * blocks)
    return SeparableNet((32,), layout, (), sharing, in_channels, n_classes)


def xception(sharing: Sharing, in_channels: int = 3, n_classes: int = 10) -> SeparableNet:
    layout: Layout = (
        (128, 2, 2, False),
        (256, 2, 2, False),
        (512, 2, 2, False),
        *((512, 3, 1, True),) * 8,
        (1024, 2, 2, True),
    )
    return SeparableNet((32, 64), layout, (1536, 2048), sharing, in_channels, n_classes)
