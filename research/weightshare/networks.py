"""The networks by name, each with a sharing variant: the one constructor the trainable calls.

| network | for | sharing it takes |
|---|---|---|
| resnet_small | CPU (digits, MNIST): 3 stages of 16/32/64 channels, `blocks` BasicBlocks each | none, thin, repeat |
| separable_small | CPU: Xception-style, stem 32, blocks to 64, 128, then `blocks` x 128 | none, thin, depthwise, pointwise |
| resnet18 | CIFAR-10 on a GPU: 64..512, BasicBlock [2, 2, 2, 2] | none, thin, repeat |
| resnet50 | CIFAR-10 on a GPU: 64..512 (x4), Bottleneck [3, 4, 6, 3] | none, thin, repeat |
| xception | CIFAR-10 on a GPU | none, thin, depthwise, pointwise |
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from weightshare.resnets import BasicBlock, Bottleneck, ResNet
from weightshare.separable import small_separable, xception
from weightshare.sharing import Sharing

__all__ = ["NETWORKS", "NetworkName", "SHARING_OF", "build_network"]

NetworkName = Literal["resnet_small", "separable_small", "resnet18", "resnet50", "xception"]
NETWORKS: tuple[str, ...] = ("resnet_small", "separable_small", "resnet18", "resnet50", "xception")
_RESNET_SHARING = ("none", "thin", "repeat")
_SEPARABLE_SHARING = ("none", "thin", "depthwise", "pointwise")
SHARING_OF: dict[str, tuple[str, ...]] = {
    "resnet_small": _RESNET_SHARING,
    "resnet18": _RESNET_SHARING,
    "resnet50": _RESNET_SHARING,
    "separable_small": _SEPARABLE_SHARING,
    "xception": _SEPARABLE_SHARING,
}


def build_network(name: str, sharing: Sharing, in_channels: int, n_classes: int, blocks: int = 1) -> nn.Module:
    """`blocks`: blocks per stage of the small networks (the CIFAR ones have their fixed depth)."""
    if sharing.kind not in SHARING_OF[name]:
        raise ValueError(f"network {name} takes sharing {', '.join(SHARING_OF[name])}, not {sharing.kind}")
    if name == "resnet_small":
        return ResNet(BasicBlock, (16, 32, 64), (blocks,) * 3, sharing, in_channels, n_classes)
    if name == "resnet18":
        return ResNet(BasicBlock, (64, 128, 256, 512), (2, 2, 2, 2), sharing, in_channels, n_classes)
    if name == "resnet50":
        return ResNet(Bottleneck, (64, 128, 256, 512), (3, 4, 6, 3), sharing, in_channels, n_classes)
    if name == "separable_small":
        return small_separable(sharing, in_channels, n_classes, blocks)
    return xception(sharing, in_channels, n_classes)
