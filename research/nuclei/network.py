"""The tile classifier: a small fully convolutional network (two 3x3 convs, two Inception-lite blocks, a final
conv whose kernel spans the whole remaining feature map) with 4 output maps (L, BE, ME, background).

Every layer has stride 1 and valid padding (the Inception branches are centre-cropped to the 5x5 branch's
size), so a T x T tile shrinks by 12 px before the final (T - 12) x (T - 12) conv gives a 1 x 1 output; and the
same network run over a whole patch zero-padded by T//2 before and T - 1 - T//2 after gives, at each pixel,
exactly the classifier applied to the tile centred there (:func:`dense_logits`). No pooling with stride, so no
shift-and-stitch is needed. BatchNorm must be in eval mode for that identity (it is per-channel affine then).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MIN_TILE", "SHRINK", "TileNet", "dense_logits"]

SHRINK = 12  # px lost to valid padding before the final conv: stem 2 x 2, each Inception block 4
MIN_TILE = SHRINK + 1
N_OUTPUTS = 4


def _conv_bn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _crop(x: torch.Tensor, by: int) -> torch.Tensor:
    return x if by == 0 else x[:, :, by:-by, by:-by]


class InceptionLite(nn.Module):
    """Parallel 1x1 / 3x3 / 5x5 / (3x3 max-pool then 1x1) branches of ``branch`` channels each, concatenated;
    valid padding, every branch centre-cropped to the 5x5 one (-4 px)."""

    def __init__(self, cin: int, branch: int) -> None:
        super().__init__()
        self.branch = branch
        self.b1 = _conv_bn(cin, branch, 1)
        self.b3 = _conv_bn(cin, branch, 3)
        self.b5 = _conv_bn(cin, branch, 5)
        self.pool = nn.MaxPool2d(3, stride=1)
        self.bp = _conv_bn(cin, branch, 1)

    @property
    def out_channels(self) -> int:
        return 4 * self.branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_crop(self.b1(x), 2), _crop(self.b3(x), 1), self.b5(x), _crop(self.bp(self.pool(x)), 1)], dim=1)


class TileNet(nn.Module):
    """(N, 3, T, T) in [0, 1] -> (N, 4) logits; on a larger input, (N, 4, H - T + 1, W - T + 1) logit maps."""

    def __init__(
        self,
        tile_size: int,
        width: int = 16,
        dropout: float = 0.2,
        mean: tuple[float, ...] = (0.5,) * 3,
        std: tuple[float, ...] = (0.25,) * 3,
    ) -> None:
        super().__init__()
        if tile_size < MIN_TILE:
            raise ValueError(f"tile_size {tile_size} is below {MIN_TILE} (the network's valid convolutions take {SHRINK} px)")
        self.tile_size = tile_size
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Sequential(_conv_bn(3, width, 3), _conv_bn(width, width, 3))
        branch = max(1, width // 2)
        self.block1 = InceptionLite(width, branch)
        self.block2 = InceptionLite(self.block1.out_channels, branch)
        self.dropout = nn.Dropout2d(dropout)
        kernel = tile_size - SHRINK
        self.head = nn.Conv2d(self.block2.out_channels, N_OUTPUTS, kernel)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        # zero (padding) pixels are normalised as any other: tile and dense paths see the same values
        x = (x - self.mean) / self.std
        return self.head(self.dropout(self.block2(self.block1(self.stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maps(x)
        return out.flatten(1) if out.shape[-2:] == (1, 1) else out


def dense_logits(model: TileNet, image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) patch -> (4, H, W) logits: at (y, x) those of the tile with rows y - T//2 .. y - T//2 + T - 1
    (nuclei.data.extract_tiles's alignment), zero-padded at the border. The model must be in eval mode."""
    t = model.tile_size
    before, after = t // 2, t - 1 - t // 2
    padded = F.pad(image[None], (before, after, before, after))
    return model.maps(padded)[0]
