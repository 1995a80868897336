"""ResNets with weight sharing in stages 2 and up (stage 1 untouched), CIFAR stem (3x3 conv, no max-pool):
a small 3-stage ResNet (16/32/64) for CPU, ResNet18 and ResNet50 (BasicBlock / Bottleneck) for CIFAR-10."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightshare.layers import ConvBN
from weightshare.sharing import Sharing

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, sharing: Sharing) -> None:
        super().__init__()
        self.conv1 = sharing.conv(in_channels, width, 3, stride)
        self.conv2 = sharing.conv(width, width, 3)
        self.shortcut = _shortcut(in_channels, width, stride, sharing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, sharing: Sharing) -> None:
        super().__init__()
        self.conv1 = sharing.conv(in_channels, width, 1)
        self.conv2 = sharing.conv(width, width, 3, stride)
        self.conv3 = sharing.conv(width, width * 4, 1)
        self.shortcut = _shortcut(in_channels, width * 4, stride, sharing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.conv3(out) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int, sharing: Sharing) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return sharing.shortcut(in_channels, out_channels, stride)


class ResNet(nn.Module):
    """`widths[i]` channels and `blocks[i]` blocks in stage i (stride 1 first, then 2); `sharing` in stages 2+."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        sharing: Sharing,
        in_channels: int = 3,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, widths[0], 3)
        stages, channels = [], widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stage_sharing = sharing if index > 0 else Sharing()
            width = stage_sharing.width(width)
            layers = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                layers.append(block(channels, width, stride, stage_sharing))
                channels = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
