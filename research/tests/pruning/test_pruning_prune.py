"""Global magnitude pruning: exactly the asked number of weights zeroed (ties too), masks that only grow, pruned
weights that stay zero through SGD with momentum and weight decay, and the one-shot / iterative schedules."""

from __future__ import annotations

import pytest
import torch
from pruning.networks import SmallCNN, SmallResNet
from pruning.prune import (
    apply_masks,
    count_nonzero,
    global_magnitude_prune,
    mask_gradients,
    prunable_weights,
    pruning_plan,
    sparsity_of,
)
from torch import nn


def _n_prunable(model: nn.Module) -> int:
    return sum(w.numel() for _, w in prunable_weights(model))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.75, 0.9, 0.95, 0.999])
def test_exactly_round_s_n_weights_are_zeroed(sparsity: float) -> None:
    torch.manual_seed(0)
    model = SmallResNet(3, 10, blocks=1)
    n = _n_prunable(model)
    masks = global_magnitude_prune(model, sparsity)
    zeros = sum(int((w == 0).sum()) for _, w in prunable_weights(model))
    assert zeros == round(sparsity * n) == sum(int((~m).sum()) for m in masks.values())
    assert sparsity_of(model) == pytest.approx(sparsity, abs=0.5 / n)
    # global: the largest pruned magnitude is no larger than the smallest kept one, over all layers together
    if 0 < sparsity:
        kept = torch.cat([w.detach().abs().flatten()[m.flatten()] for (_, w), m in zip(prunable_weights(model), masks.values())])
        assert kept.min() > 0
    for name, module in model.named_modules():  # biases and BatchNorm are not pruned
        if isinstance(module, nn.BatchNorm2d):
            assert bool((module.weight != 0).all()), name


def test_global_threshold_and_ties_give_the_exact_count() -> None:
    model = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.5)  # 100 equal weights: the count must still be exact
        model[1].weight.copy_(torch.arange(100, dtype=torch.float32).view(10, 10) / 100 + 1.0)  # all larger
    global_magnitude_prune(model, 0.37)  # 74 of 200: all from the small layer, 74 of its 100 ties
    assert int((model[0].weight == 0).sum()) == 74 and int((model[1].weight == 0).sum()) == 0
    global_magnitude_prune(model, 0.6)  # 120: the whole first layer, then the 20 smallest of the second
    assert int((model[0].weight == 0).sum()) == 100
    assert torch.equal((model[1].weight == 0).flatten().nonzero().flatten(), torch.arange(20))


def test_iterative_masks_only_grow_and_hit_the_target() -> None:
    torch.manual_seed(1)
    model = SmallCNN(1, 10)
    n = _n_prunable(model)
    plan = pruning_plan(0.9, "iterative", 4, 8)
    assert sorted(plan) == [0, 2, 4, 6] and plan[6] == 0.9
    assert [round(plan[k], 4) for k in sorted(plan)] == [round(1 - 0.1 ** (r / 4), 4) for r in range(1, 5)]
    masks: dict[str, torch.Tensor] = {}
    for index in sorted(plan):
        previous = {k: v.clone() for k, v in masks.items()}
        with torch.no_grad():  # weights move between prunings; pruned ones come back as non-zero noise
            for _, w in prunable_weights(model):
                w.add_(torch.randn_like(w) * 0.01)
        masks = global_magnitude_prune(model, plan[index], masks)
        for name, mask in previous.items():
            assert not bool((~mask & masks[name]).any()), "a pruned weight was revived"
        assert sum(int((~m).sum()) for m in masks.values()) == round(plan[index] * n)


def test_masked_weights_stay_zero_through_sgd_with_momentum_and_weight_decay() -> None:
    torch.manual_seed(2)
    model = SmallResNet(1, 10)
    masks = global_magnitude_prune(model, 0.8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        mask_gradients(model, masks)
        optimizer.step()
        apply_masks(model, masks)
    for (_, w), mask in zip(prunable_weights(model), masks.values()):
        assert bool((w[~mask] == 0).all())
        assert bool((w[mask] != 0).all())  # the kept weights are trained (and none is exactly zero)
    prunable, other = count_nonzero(model)
    assert prunable == sum(int(m.sum()) for m in masks.values()) and other > 0


def test_schedules_and_bad_values() -> None:
    assert pruning_plan(0.0, "iterative", 3, 5) == {} and pruning_plan(0.5, "oneshot", 3, 5) == {0: 0.5}
    assert sorted(pruning_plan(0.5, "iterative", 3, 5)) == [0, 1, 3]
    with pytest.raises(ValueError, match="--prune-rounds must be in 1..--finetune-epochs"):
        pruning_plan(0.5, "iterative", 6, 5)
    with pytest.raises(ValueError, match="unknown schedule 'gradual'"):
        pruning_plan(0.5, "gradual", 3, 5)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        global_magnitude_prune(SmallCNN(1, 10), 1.0)
