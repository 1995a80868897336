"""A repeat-shared ResNet is exactly the thin ResNet whose next convs have the summed weights, when the
shortcut is repeated too (shrink.ipynb); with the original's forgotten (full-width) shortcut it is not."""

from __future__ import annotations

import pytest
import torch
from weightshare.networks import build_network
from weightshare.resnets import ResNet
from weightshare.sharing import Sharing
from weightshare.shrink import fold_input_copies, shrink_state_dict


def _net(sharing: Sharing, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    net = build_network("resnet_small", sharing, in_channels=1, n_classes=10, blocks=2)
    _randomise_batchnorm(net)
    return net


def _randomise_batchnorm(net: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that eval mode tests them too."""
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def test_a_repeat_conv_then_the_next_conv_is_the_thin_conv_with_summed_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8, 8)
    repeat = Sharing("repeat", 4).conv(6, 16, 3).eval()
    next_conv = torch.nn.Conv2d(16, 5, 3, padding=1, bias=False)
    thin_next = torch.nn.Conv2d(4, 5, 3, padding=1, bias=False)
    thin_next.weight.data.copy_(fold_input_copies(next_conv.weight.data, 4))
    with torch.no_grad():
        shared = next_conv(torch.relu(repeat(x)))
        thin = thin_next(torch.relu(repeat.bn(repeat.conv(x))))  # the thin conv + BN, not repeated
    assert torch.allclose(shared, thin, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_repeat_shared_network_equals_the_shrunk_thin_network(factor: int, mode: str) -> None:
    repeated, thin = _net(Sharing("repeat", factor)), _net(Sharing("thin", factor), seed=1)
    thin.load_state_dict(shrink_state_dict(repeated.state_dict(), thin.state_dict(), factor))
    getattr(repeated, mode)(), getattr(thin, mode)()  # train: BN batch statistics of the thin tensor
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = repeated(x), thin(x)
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4), (expected - got).abs().max()
    assert expected.abs().mean() > 0.1  # not trivially zero


def test_the_forgotten_shortcut_variant_differs_measurably_from_the_fixed_one() -> None:
    """Same weights everywhere except the projection shortcuts: the fixed one's shortcuts are the thin
    1x1 convs repeated, the forgotten one's full-width 1x1 convs. The fixed network's stage outputs are
    f identical copies (so it is the thin network); the forgotten one's copies differ, and it does not
    shrink onto the thin network at all."""
    factor = 4
    fixed = _net(Sharing("repeat", factor))
    forgotten = _net(Sharing("repeat", factor, repeat_shortcut=False))
    shared = {k: v for k, v in fixed.state_dict().items() if "shortcut" not in k}
    missing, _ = forgotten.load_state_dict(shared, strict=False)
    assert missing and all("shortcut" in k for k in missing)
    fixed.eval(), forgotten.eval()
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fixed_features = fixed.stages(torch.relu(fixed.stem(x)))
        forgotten_features = forgotten.stages(torch.relu(forgotten.stem(x)))
        outputs = fixed(x), forgotten(x)

    def copy_spread(features: torch.Tensor) -> float:
        copies = features.view(features.shape[0], factor, -1, *features.shape[2:])
        return float((copies - copies[:, :1]).abs().max() / features.abs().mean())

    assert copy_spread(fixed_features) < 1e-6
    assert copy_spread(forgotten_features) > 0.1
    assert (outputs[0] - outputs[1]).abs().max() > 0.1 * outputs[0].abs().mean()
    with pytest.raises(ValueError, match="shortcut"):
        shrink_state_dict(forgotten.state_dict(), _net(Sharing("thin", factor)).state_dict(), factor)
