"""White-box and black-box evaluation in torch (no foolbox), in pixel space: images in [0, 1], L-inf balls.

* ``fgsm``: one signed-gradient step of size eps, then the [0, 1] box.
* ``pgd``: ``steps`` signed-gradient steps of ``step_size`` from x (or a uniform random start in the
  ball), each projected back into the eps ball around x and the [0, 1] box.
* BPDA: ``pgd(..., surrogate="identity" | "soft")`` takes its gradients with every SpatialTopK
  differentiated as the surrogate (topk.layers.bpda); the forward pass, hence the result, is the real one.
* transfer: adversarials crafted with ``pgd`` on another model (the ReLU twin), scored on this one.
* ``noisy``: x + N(0, sigma^2), clipped to [0, 1].

All attacks run with the model in eval mode (BatchNorm statistics and boosting duty cycles untouched) and
draw their random numbers from a given generator, not the global RNG, so evaluating does not change
training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from topk.layers import Surrogate, bpda

__all__ = ["Attack", "accuracy", "adversarial_accuracy", "fgsm", "noisy", "pgd"]

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, surrogate: Surrogate | None) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    if surrogate is None:
        loss = F.cross_entropy(model(x), y)
    else:
        with bpda(model, surrogate):
            loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, surrogate: Surrogate | None = None) -> torch.Tensor:
    grad = _input_grad(model, x, y, surrogate)
    return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Into the L-inf ball of radius eps around x, then the [0, 1] box (which keeps it in the ball: x is in it)."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    surrogate: Surrogate | None = None,
) -> torch.Tensor:
    x = x.detach()
    x_adv = x
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
        x_adv = project(x + eps * noise, x, eps)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y, surrogate)
        x_adv = project(x_adv + step_size * grad.sign(), x, eps).detach()
    return x_adv


def noisy(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(xb).argmax(1) == yb).sum())
        for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True)
    )
    model.train(was_training)
    return correct / max(1, len(y))


def adversarial_accuracy(
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    batch_size: int = 500,
    source: nn.Module | None = None,
) -> float:
    """Accuracy of ``target`` on ``attack(x, y)``, crafted batch by batch with ``source`` (default target) in
    eval mode: ``attack`` closes over the model it differentiates."""
    models = [target] + ([source] if source is not None else [])
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        correct = 0
        for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True):
            x_adv = attack(xb, yb)
            with torch.no_grad():
                correct += int((target(x_adv).argmax(1) == yb).sum())
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    return correct / max(1, len(y))
