"""The networks pruned and quantized: a small ResNet (3 stages of 16/32/64 channels, the CIFAR ResNet of He et
al. 2016 with `blocks` basic blocks per stage: 3 gives ResNet-20) and a small plain CNN for digits.

Self-contained on purpose (plain torch): the weight-sharing project keeps its own networks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NETWORKS", "BasicBlock", "SmallCNN", "SmallResNet", "build_network"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut (a 1x1 conv + BN where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem conv (16) then 3 stages of `blocks` basic blocks at 16, 32, 64 channels (strides 1, 2, 2), global
    average pooling and a linear classifier. Any input size from 8x8 up."""

    def __init__(self, in_channels: int, n_classes: int, blocks: int = 1, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SmallCNN(nn.Module):
    """conv16-conv32-pool-conv64 (3x3, BN, ReLU), global average pooling, linear: a small CNN for digits/MNIST."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()

        def unit(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*unit(in_channels, 16), *unit(16, 32), nn.MaxPool2d(2), *unit(32, 64))
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


NETWORKS = ("resnet", "cnn")


def build_network(name: str, in_channels: int, n_classes: int, blocks: int = 1) -> nn.Module:
    """A network by name (NETWORKS); `blocks` is the ResNet's basic blocks per stage."""
    if name == "resnet":
        return SmallResNet(in_channels, n_classes, blocks)
    if name == "cnn":
        return SmallCNN(in_channels, n_classes)
    raise ValueError(f"unknown network {name!r}; valid: {', '.join(NETWORKS)}")
