"""``SpatialTopK``: keep the k largest channels at every spatial location (or, ``local=False``, the k largest
of the whole C x H x W per sample), zero the rest, values unchanged where kept.

As in the original (``adv-gen/models/SpatialTopK.py``): ``k = int(C * frac)`` (here at least 1), negative
values can win (no ReLU inside), and the gradient flows only through the winners (topk + scatter).

Optional Numenta boosting (``KWinners2d``, Ahmad & Scheinkman 2019): the winners are chosen on
``x * exp((k/C - duty_cycle) * boost_strength)`` while the kept values are x's own; ``duty_cycle`` is a
running mean, per channel, of how often it wins (updated in training), and ``decay_boost()`` (once an
epoch) multiplies the strength by ``boost_strength_factor``. ``k_inference_factor`` widens k in eval mode.

BPDA (Athalye et al. 2018): inside ``bpda(model, surrogate)`` each SpatialTopK returns the same forward
values but differentiates as a smooth surrogate: ``identity`` (gradient 1 everywhere) or ``soft``
(``x * sigmoid((x - t_k) / tau)``, t_k the k-th largest value, tau the channel std): an attack that uses
those gradients is not stopped by the masking of the hard top-k.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

__all__ = ["Surrogate", "SpatialTopK", "bpda", "global_topk", "k_of", "spatial_topk"]

Surrogate = Literal["identity", "soft"]


def k_of(channels: int, frac: float) -> int:
    """The original's ``int(C * frac)``, at least 1 and at most C."""
    return min(channels, max(1, int(channels * frac)))


def spatial_topk(x: torch.Tensor, k: int, score: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k channels at each (h, w) of (B, C, H, W) ``x``, chosen on ``score`` (default x), x's values kept."""
    idx = torch.topk(x if score is None else score, k, dim=1).indices
    return torch.zeros_like(x).scatter(1, idx, x.gather(1, idx))


def global_topk(x: torch.Tensor, k: int, score: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k over each sample's whole C x H x W, chosen on ``score`` (default x), x's values kept."""
    flat = x.flatten(1)
    idx = torch.topk(flat if score is None else score.flatten(1), k, dim=1).indices
    return torch.zeros_like(flat).scatter(1, idx, flat.gather(1, idx)).view_as(x)


class SpatialTopK(nn.Module):
    """k-winners-take-all across channels: per location (``local=True``, the original) or per sample."""

    duty_cycle: torch.Tensor
    boost_strength: torch.Tensor
    seen: torch.Tensor

    def __init__(
        self,
        frac: float,
        channels: int | None = None,
        local: bool = True,
        boost_strength: float = 0.0,
        boost_strength_factor: float = 0.9,
        duty_cycle_period: int = 1000,
        k_inference_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"frac must be in (0, 1], not {frac}")
        if boost_strength > 0.0 and channels is None:
            raise ValueError("boosting keeps a duty cycle per channel: give channels")
        self.frac = frac
        self.local = local
        self.boost_strength_factor = boost_strength_factor
        self.duty_cycle_period = duty_cycle_period
        self.k_inference_factor = k_inference_factor
        self.surrogate: Surrogate | None = None
        # buffers: part of the state_dict, so a checkpoint holds the boosting state
        self.register_buffer("boost_strength", torch.tensor(float(boost_strength)))
        self.register_buffer("duty_cycle", torch.zeros(channels or 0))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def k_for(self, x: torch.Tensor) -> int:
        n = x.shape[1] if self.local else x[0].numel()
        k = k_of(n, self.frac)
        if not self.training and self.k_inference_factor != 1.0:
            k = min(n, max(1, int(round(k * self.k_inference_factor))))
        return k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k_for(x)
        score = self._boosted(x) if float(self.boost_strength) > 0.0 else None
        select = spatial_topk if self.local else global_topk
        out = select(x, k, score)
        if self.training and self.duty_cycle.numel():
            self._update_duty_cycle(out != 0)
        if self.surrogate is None:
            return out
        smooth = x if self.surrogate == "identity" else _soft_topk(x, k, self.local)
        return smooth + (out - smooth).detach()  # forward: the hard top-k; backward: the surrogate

    def _boosted(self, x: torch.Tensor) -> torch.Tensor:
        target = k_of(x.shape[1], self.frac) / x.shape[1]
        factor = torch.exp((target - self.duty_cycle) * self.boost_strength)
        return x * factor.view(1, -1, 1, 1)

    @torch.no_grad()
    def _update_duty_cycle(self, won: torch.Tensor) -> None:
        """Numenta's running mean: duty = (duty * (period - B) + wins per location summed over B) / period."""
        batch = won.shape[0]
        self.seen += batch
        period = min(self.duty_cycle_period, int(self.seen))
        wins = won.float().sum(dim=(0, 2, 3)) / (won.shape[2] * won.shape[3])
        self.duty_cycle.mul_(period - batch).add_(wins).div_(period)

    @torch.no_grad()
    def decay_boost(self) -> None:
        self.boost_strength.mul_(self.boost_strength_factor)

    def extra_repr(self) -> str:
        return f"frac={self.frac}, local={self.local}, boost_strength={float(self.boost_strength):g}"


def _soft_topk(x: torch.Tensor, k: int, local: bool) -> torch.Tensor:
    """A smooth relaxation of top-k: x * sigmoid((x - t_k) / tau), t_k the k-th largest value (detached)."""
    flat = x if local else x.flatten(1)
    dim = 1
    threshold = torch.topk(flat, k, dim=dim).values.narrow(dim, k - 1, 1).detach()
    tau = flat.detach().std(dim=dim, keepdim=True).clamp_min(1e-6) if flat.shape[dim] > 1 else torch.ones_like(threshold)
    return (flat * torch.sigmoid((flat - threshold) / tau)).view_as(x)


@contextmanager
def bpda(model: nn.Module, surrogate: Surrogate = "identity") -> Iterator[int]:
    """Every SpatialTopK in ``model`` differentiates as ``surrogate`` inside the block; yields how many."""
    layers = [m for m in model.modules() if isinstance(m, SpatialTopK)]
    for layer in layers:
        layer.surrogate = surrogate
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.surrogate = None


def decay_all_boosts(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, SpatialTopK) and not math.isclose(float(m.boost_strength), 0.0):
            m.decay_boost()
