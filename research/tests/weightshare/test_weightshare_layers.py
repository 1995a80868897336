"""The shared layers: their unique-parameter counts (by hand) and that their tiling is what it says."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from weightshare.layers import (
    ConvBN,
    RepeatConv2d,
    SharedDepthwiseConv2d,
    SharedPointwiseConv2d,
    unique_parameter_count,
)
from weightshare.networks import build_network
from weightshare.sharing import Sharing


def test_repeat_conv_counts_its_thin_conv_and_bn_once() -> None:
    layer = RepeatConv2d(8, 16, 3, factor=4)
    # conv 8 in x 16/4 out x 3x3 = 288, BN weight + bias on 4 channels = 8
    assert unique_parameter_count(layer) == 8 * 4 * 9 + 2 * 4 == 296
    x = torch.randn(2, 8, 5, 5)
    out = layer(x)
    assert out.shape == (2, 16, 5, 5)
    for copy in range(1, 4):  # channel c + 4k is channel c
        assert torch.equal(out[:, 4 * copy : 4 * copy + 4], out[:, :4])


def test_shared_depthwise_counts_its_unique_kernels() -> None:
    layer = SharedDepthwiseConv2d(16, 3, n_unique=4)
    assert unique_parameter_count(layer) == 4 * 9 == 36
    assert unique_parameter_count(nn.Conv2d(16, 16, 3, groups=16, bias=False)) == 144
    x = torch.randn(1, 1, 6, 6).repeat(1, 16, 1, 1)  # the same image in every channel
    out = layer(x)
    assert torch.equal(out[:, 4:8], out[:, :4]) and not torch.equal(out[:, 1], out[:, 0])


def test_lightconv_kernels_are_normalised_and_dropconnect_acts_in_training_only() -> None:
    torch.manual_seed(0)
    layer = SharedDepthwiseConv2d(8, 3, n_unique=2, lightconv=True, dropconnect=0.5)
    assert unique_parameter_count(layer) == 2 * 9
    layer.eval()
    kernels = layer.kernels()
    assert torch.allclose(kernels.sum(dim=(1, 2, 3)), torch.ones(2)) and bool((kernels > 0).all())
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(layer(x), layer(x))
    layer.train()
    dropped = layer.kernels()
    assert bool((dropped == 0).any()) and not torch.equal(layer(x), layer(x))


def test_shared_pointwise_counts_its_unique_columns() -> None:
    layer = SharedPointwiseConv2d(16, 32, n_unique_in=4)
    assert unique_parameter_count(layer) == 32 * 4 == 128
    x = torch.randn(2, 16, 3, 3)
    # input channel c uses column c mod 4: the same as a thin 1x1 conv on the summed channel groups
    summed = x.view(2, 4, 4, 3, 3).sum(dim=1)
    assert torch.allclose(layer(x), nn.functional.conv2d(summed, layer.weight), atol=1e-5)


def test_tied_parameters_count_once() -> None:
    conv = ConvBN(4, 4, 3)
    assert unique_parameter_count(nn.Sequential(conv, conv)) == 4 * 4 * 9 + 8


def test_small_resnet_counts_by_hand() -> None:
    stem = 1 * 16 * 9 + 32
    stage1 = 2 * (16 * 16 * 9 + 32)
    fc = 64 * 10 + 10
    # stage 2 (16 -> 32, stride 2) and stage 3 (32 -> 64): conv1, conv2, 1x1 shortcut, each with BN
    stage2 = (16 * 32 * 9 + 64) + (32 * 32 * 9 + 64) + (16 * 32 + 64)
    stage3 = (32 * 64 * 9 + 128) + (64 * 64 * 9 + 128) + (32 * 64 + 128)
    assert _count("resnet_small", Sharing()) == stem + stage1 + stage2 + stage3 + fc == 77_754
    # repeat f=4: every conv of stages 2-3 has out/4 filters (inputs stay full width), shortcut too
    stage2_r = (16 * 8 * 9 + 16) + (32 * 8 * 9 + 16) + (16 * 8 + 16)
    stage3_r = (32 * 16 * 9 + 32) + (64 * 16 * 9 + 32) + (32 * 16 + 32)
    assert _count("resnet_small", Sharing("repeat", 4)) == stem + stage1 + stage2_r + stage3_r + fc == 23_562
    # the forgotten shortcut keeps the full-width 1x1 convs of stages 2 and 3
    forgotten = stem + stage1 + stage2_r - (16 * 8 + 16) + (16 * 32 + 64) + stage3_r - (32 * 16 + 32) + (32 * 64 + 128) + fc
    assert _count("resnet_small", Sharing("repeat", 4, repeat_shortcut=False)) == forgotten
    # thin f=4: stages 2-3 have 8 and 16 channels, the classifier 16 inputs
    stage2_t = (16 * 8 * 9 + 16) + (8 * 8 * 9 + 16) + (16 * 8 + 16)
    stage3_t = (8 * 16 * 9 + 32) + (16 * 16 * 9 + 32) + (8 * 16 + 32)
    assert _count("resnet_small", Sharing("thin", 4)) == stem + stage1 + stage2_t + stage3_t + 16 * 10 + 10


def test_separable_sharing_saves_what_it_shares() -> None:
    base = _count("separable_small", Sharing())
    # light blocks: sepconv 64->128 and 128->128 (block 2), 128->128 twice (block 3)
    depthwise_kernels = (64 + 128 + 128 + 128) * 9
    assert base - _count("separable_small", Sharing("depthwise", 4)) == depthwise_kernels * 3 // 4
    pointwise_weights = 64 * 128 + 3 * 128 * 128
    assert base - _count("separable_small", Sharing("pointwise", 2)) == pointwise_weights // 2


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "xception"])
def test_the_cifar_networks_run_and_sharing_shrinks_them(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    kind = "repeat" if name.startswith("resnet") else "depthwise"
    full, shared, thin = (build_network(name, s, 3, 10).eval() for s in (Sharing(), Sharing(kind, 4), Sharing("thin", 4)))
    with torch.no_grad():
        assert full(x).shape == shared(x).shape == thin(x).shape == (1, 10)
    assert unique_parameter_count(thin) < unique_parameter_count(full)
    assert unique_parameter_count(shared) < unique_parameter_count(full)


def _count(name: str, sharing: Sharing) -> int:
    return unique_parameter_count(build_network(name, sharing, in_channels=1, n_classes=10))
