"""Global magnitude pruning to an exact target sparsity, masks that stay applied while fine-tuning, and the
one-shot / iterative schedules.

Prunable weights: the weight of every Conv2d and Linear layer (biases and BatchNorm parameters stay dense,
as in Han et al. 2015 and most pruning baselines). Pruning to sparsity s zeroes exactly round(s * N) of the
N prunable weights, the smallest in magnitude over all layers together; ties are broken by position (a
stable sort), so the count is exact even when many weights are equal. Weights pruned earlier are pruned
first again (masks only grow), so iterative pruning never revives a weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "SCHEDULES",
    "apply_masks",
    "count_nonzero",
    "global_magnitude_prune",
    "mask_gradients",
    "prunable_weights",
    "pruning_plan",
    "sparsity_of",
]

SCHEDULES = ("oneshot", "iterative")


def prunable_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, weight) of every Conv2d and Linear layer, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            yield f"{name}.weight", module.weight


def global_magnitude_prune(
    model: nn.Module, sparsity: float, masks: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Zero exactly round(sparsity * N) prunable weights (the smallest |w| over all layers; earlier masks
    first) and return the new masks {name: bool tensor, True = kept}."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = dict(prunable_weights(model))
    masks = masks or {}
    scores = []
    for name, weight in weights.items():
        score = weight.detach().abs().flatten().double()
        if name in masks:
            score = torch.where(masks[name].flatten(), score, torch.full_like(score, -1.0))  # pruned before: first
        scores.append(score)
    flat = torch.cat(scores)
    n_pruned = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_pruned:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_pruned]] = False
    new_masks, offset = {}, 0
    for name, weight in weights.items():
        size = weight.numel()
        new_masks[name] = keep[offset : offset + size].view_as(weight).clone()
        offset += size
    apply_masks(model, new_masks)
    return new_masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights (after every optimizer step: momentum and weight decay must not revive them)."""
    for name, weight in prunable_weights(model):
        if name in masks:
            weight.mul_(masks[name].to(weight.dtype))


def mask_gradients(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights, so the optimizer's momentum holds nothing for them."""
    for name, weight in prunable_weights(model):
        if name in masks and weight.grad is not None:
            weight.grad.mul_(masks[name].to(weight.grad.dtype))


def sparsity_of(model: nn.Module) -> float:
    """Fraction of prunable weights that are exactly zero."""
    total = zeros = 0
    for _, weight in prunable_weights(model):
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return zeros / total if total else 0.0


def count_nonzero(model: nn.Module) -> tuple[int, int]:
    """(non-zero prunable weights, non-zero other parameters)."""
    prunable_names = {name for name, _ in prunable_weights(model)}
    prunable = other = 0
    for name, parameter in model.named_parameters():
        nonzero = int(torch.count_nonzero(parameter))
        if name in prunable_names:
            prunable += nonzero
        else:
            other += nonzero
    return prunable, other


def pruning_plan(sparsity: float, schedule: str, rounds: int, finetune_epochs: int) -> dict[int, float]:
    """{fine-tuning epoch index (0-based): sparsity to prune to before it}.

    oneshot: the target before the first fine-tuning epoch. iterative: `rounds` prunings spread evenly over
    the fine-tuning epochs, each removing the same fraction of the weights still left:
    s_r = 1 - (1 - s) ** (r / rounds), so the last round reaches s exactly. Sparsity 0 prunes nothing.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if sparsity == 0.0:
        return {}
    if finetune_epochs < 1:
        raise ValueError("pruning needs at least 1 fine-tuning epoch (--finetune-epochs)")
    if schedule == "oneshot":
        return {0: sparsity}
    if not 1 <= rounds <= finetune_epochs:
        raise ValueError(f"--prune-rounds must be in 1..--finetune-epochs ({finetune_epochs}), got {rounds}")
    plan = {}
    for r in range(1, rounds + 1):
        epoch = (r - 1) * finetune_epochs // rounds
        plan[epoch] = sparsity if r == rounds else 1.0 - math.pow(1.0 - sparsity, r / rounds)
    return plan
