"""The networks, in plain torch, with their activations chosen by one ``Activation`` spec.

Inputs are images in [0, 1]: each network normalises them itself (``Normalize``), so the attacks work in
pixel space (epsilon balls and the [0, 1] box are the images').

Placements (EXPERIMENTS.md 5.1):

* ``stages``: ReLUs inside the blocks are kept; a SpatialTopK sits after the stem and after every stage
  (the original's ``PResNetReg``). In ``small_cnn`` the stage ends with that top-k instead of its ReLU.
* ``every_relu``: every ReLU is replaced by a SpatialTopK too (``PResNetRegNoRelU``), plus the after-stage
  top-k.

With ``activation: relu`` both placements give the plain network (PreAct-ResNet18 has nothing after its
stem and stages; ``small_cnn`` ends each stage with a ReLU): the ReLU twin of the transfer attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from topk.layers import SpatialTopK

__all__ = ["Activation", "ActivationName", "NetworkName", "Normalize", "Placement", "build_network"]

ActivationName = Literal["relu", "topk", "topk_global"]
Placement = Literal["stages", "every_relu"]
NetworkName = Literal["small_cnn", "preact_resnet18"]


@dataclass(frozen=True)
class Activation:
    name: ActivationName = "relu"
    frac: float = 0.1
    placement: Placement = "stages"
    boost_strength: float = 0.0
    boost_strength_factor: float = 0.9
    duty_cycle_period: int = 1000
    k_inference_factor: float = 1.0

    def _topk(self, channels: int) -> nn.Module:
        return SpatialTopK(
            self.frac,
            channels,
            local=self.name == "topk",
            boost_strength=self.boost_strength,
            boost_strength_factor=self.boost_strength_factor,
            duty_cycle_period=self.duty_cycle_period,
            k_inference_factor=self.k_inference_factor,
        )

    def inner(self, channels: int) -> nn.Module:
        """What stands where a ReLU does inside a block."""
        if self.name != "relu" and self.placement == "every_relu":
            return self._topk(channels)
        return nn.ReLU()

    def after_stage(self, channels: int, relu_net: nn.Module) -> nn.Module:
        """What follows the stem and each stage: top-k, or ``relu_net``'s own choice for the ReLU network."""
        return relu_net if self.name == "relu" else self._topk(channels)

    def as_relu(self) -> Activation:
        return Activation("relu")


class Normalize(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Digits (1 x 16 x 16): stem conv(w) -> stage conv(2w), conv(2w), pool -> stage conv(4w), pool -> linear."""

    def __init__(self, act: Activation, in_channels: int, n_classes: int, width: int, norm: Normalize) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width

        def conv_bn(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]

        self.features = nn.Sequential(
            norm,
            *conv_bn(in_channels, w1),
            act.after_stage(w1, nn.ReLU()),
            *conv_bn(w1, w2),
            act.inner(w2),
            *conv_bn(w2, w2),
            act.after_stage(w2, nn.ReLU()),
            nn.MaxPool2d(2),
            *conv_bn(w2, w3),
            act.after_stage(w3, nn.ReLU()),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(w3, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class PreActBlock(nn.Module):
    def __init__(self, act: Activation, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.act1 = nn.BatchNorm2d(cin), act.inner(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(cout), act.inner(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """kuangliu's CIFAR PreAct-ResNet18 (64-128-256-512, 2 blocks a stage), width scalable."""

    def __init__(self, act: Activation, in_channels: int, n_classes: int, width: int, norm: Normalize) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.norm = norm
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.after_stem = act.after_stage(width, nn.Identity())
        stages: list[nn.Module] = []
        cin = width
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [PreActBlock(act, cin, cout, stride), PreActBlock(act, cout, cout, 1)]
            stages += [nn.Sequential(*blocks), act.after_stage(cout, nn.Identity())]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.after_stem(self.stem(self.norm(x))))
        out = F.relu(self.bn(out))  # the final pre-activation ReLU, as in the original
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_network(
    name: NetworkName,
    act: Activation,
    in_channels: int,
    n_classes: int,
    width: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> nn.Module:
    norm = Normalize(mean, std)
    if name == "small_cnn":
        return SmallCNN(act, in_channels, n_classes, width, norm)
    return PreActResNet18(act, in_channels, n_classes, width, norm)
