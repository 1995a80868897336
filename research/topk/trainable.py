"""``TopKTrainable``: a plain Ray Tune trainable; one step = one epoch of SGD, the clean test set, and (at the
last epoch, or every ``attack_every``) the attacks on the first ``attack_subset`` test images.

Reports ``epoch``, ``train_loss``, ``train_accuracy``, ``test_accuracy`` (clean, whole test set), ``lr``,
``epoch_time_s`` (the whole step: training, the twin, evaluation and attacks), ``samples_per_s``
(training images per second of the model's own training pass) and, when it attacks: ``acc_clean_subset``
(clean accuracy on the attacked images), ``acc_fgsm_eps<E>``, ``acc_pgd_eps<E>``, ``acc_bpda_eps<E>``
(PGD with the SpatialTopK gradients through the ``bpda_surrogate``), ``acc_transfer_eps<E>`` (PGD crafted
on the ReLU twin, with ``transfer``), ``acc_worst_eps<E>`` (the lowest of those four: the robust accuracy
estimate, so that masked gradients are never reported as robustness), ``acc_noise_sigma<S>`` and ``attack_time_s``; E and S are the radius
and the noise std x 1000 (topk.config.milli). Without a SpatialTopK (``activation: relu``) BPDA is PGD and
the twin is the model itself, so those two metrics equal ``acc_pgd_eps<E>`` and are not computed twice.

The ReLU twin (``transfer: true`` and a top-k activation) is the same network with ReLUs, built from the
same seed (hence the same initial weights: SpatialTopK has none) and trained alongside on the same data
order with the same optimiser.

A checkpoint (``state.pt``) holds everything a resumed trial needs to continue bit for bit on a CPU: both
models (boosting duty cycles are buffers), optimizers, schedulers, epoch, the data-order generators and the
global torch/numpy/python RNGs. The attacks draw from a generator seeded by (seed, epoch), so they neither
consume nor depend on the training state's randomness.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from ray import tune
from torch import nn

from topk.attacks import adversarial_accuracy, fgsm, noisy, pgd
from topk.config import TopKConfig, milli
from topk.data import load_dataset, random_crop_flip
from topk.layers import decay_all_boosts
from topk.networks import Activation, build_network

__all__ = ["CHECKPOINT_FILE", "Learner", "TopKTrainable", "config_error_line"]

CHECKPOINT_FILE = "state.pt"
_MILESTONES = (0.5, 0.75)  # step LR: x0.1 at half and three quarters of training
_LR_GAMMA = 0.1


def config_error_line(error: pydantic.ValidationError) -> str:
    """One line: each problem as ``key: message``, then the valid keys."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
    )
    return f"invalid topk config: {problems} (valid keys: {', '.join(TopKConfig.model_fields)})"


@dataclass
class Learner:
    """One network with its optimiser, LR schedule and data-order generator."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    generator: torch.Generator

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])


class TopKTrainable(tune.Trainable):
    config_model = TopKConfig

    def setup(self, config: dict[str, Any]) -> None:
        try:  # Ray's own keys look like "__trial_info__"
            self.cfg = TopKConfig.model_validate({k: v for k, v in config.items() if not k.startswith("__")})
        except pydantic.ValidationError as error:
            raise ValueError(config_error_line(error)) from None
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.data = load_dataset(cfg).to(self.device)
        self.activation = Activation(
            cfg.activation,
            cfg.frac,
            cfg.placement,
            cfg.boost_strength,
            cfg.boost_strength_factor,
            cfg.duty_cycle_period,
            cfg.k_inference_factor,
        )
        self.learner = self._learner(self.activation)
        self.has_topk = cfg.activation != "relu"
        self.twin = self._learner(self.activation.as_relu()) if cfg.transfer and self.has_topk else None
        torch.manual_seed(cfg.seed)
        self.epoch = 0

    def _learner(self, act: Activation) -> Learner:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # the twin starts from the same weights
        model = build_network(
            cfg.network_name, act, self.data.in_channels, self.data.n_classes, cfg.width_value, self.data.mean, self.data.std
        ).to(self.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        milestones = sorted({max(1, round(cfg.epochs * m)) for m in _MILESTONES})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, _LR_GAMMA)
        return Learner(model, optimizer, scheduler, torch.Generator().manual_seed(cfg.seed))

    @property
    def model(self) -> nn.Module:
        return self.learner.model

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.setup(new_config)  # sets every attribute a trial uses
        return True

    def step(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.epoch += 1
        lr = self.learner.optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy, train_s = self.train_epoch(self.learner)
        if self.twin is not None:
            self.train_epoch(self.twin)
        result: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "test_accuracy": self.clean_accuracy(self.data.x_test, self.data.y_test),
            "lr": lr,
            "samples_per_s": len(self.data.y_train) / train_s,
        }
        if self.cfg.attacks_at(self.epoch):
            attack_started = time.perf_counter()
            result.update(self.attack_metrics())
            result["attack_time_s"] = time.perf_counter() - attack_started
        result["epoch_time_s"] = time.perf_counter() - started
        result["done"] = self.epoch >= self.cfg.epochs
        return result

    def train_epoch(self, learner: Learner) -> tuple[float, float, float]:
        """Mean loss and accuracy over one shuffled pass, and its duration in seconds; then the LR step and
        the boost decay (once an epoch, as Numenta's)."""
        started = time.perf_counter()
        model, optimizer = learner.model, learner.optimizer
        model.train()
        x_all, y_all = self.data.x_train, self.data.y_train
        order = torch.randperm(len(y_all), generator=learner.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for index in torch.split(order, self.cfg.batch_size):
            x, y = x_all[index], y_all[index]
            if self.cfg.augment_on:
                x = random_crop_flip(x, learner.generator)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - started
        learner.scheduler.step()
        decay_all_boosts(model)
        n = len(y_all)
        return float(loss_sum) / n, float(correct) / n, elapsed

    def clean_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return adversarial_accuracy(self.model, x, y, lambda xb, yb: xb, self.cfg.eval_batch_size)

    def attack_metrics(self) -> dict[str, float]:
        """Every attack's accuracy on the first ``attack_subset`` test images (module docstring)."""
        cfg, model = self.cfg, self.model
        x, y = self.data.x_test[: cfg.attack_subset], self.data.y_test[: cfg.attack_subset]
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
        batch = cfg.eval_batch_size

        def score(attack: Any, source: nn.Module | None = None) -> float:
            return adversarial_accuracy(model, x, y, attack, batch, source)

        metrics = {"acc_clean_subset": self.clean_accuracy(x, y)}
        for eps in cfg.epsilons:
            e = milli(eps)
            step = cfg.pgd_step_scale * eps / cfg.pgd_steps
            white = partial(pgd, steps=cfg.pgd_steps, step_size=step, random_start=cfg.pgd_random_start, generator=generator)
            if cfg.fgsm:
                metrics[f"acc_fgsm_eps{e}"] = score(lambda xb, yb, eps=eps: fgsm(model, xb, yb, eps))
            metrics[f"acc_pgd_eps{e}"] = score(lambda xb, yb, eps=eps, white=white: white(model, xb, yb, eps))
            if self.has_topk:
                bpda_attack = partial(white, surrogate=cfg.bpda_surrogate)
                metrics[f"acc_bpda_eps{e}"] = score(lambda xb, yb, eps=eps, a=bpda_attack: a(model, xb, yb, eps))
            else:
                metrics[f"acc_bpda_eps{e}"] = metrics[f"acc_pgd_eps{e}"]
            if self.twin is not None:
                twin = self.twin.model
                metrics[f"acc_transfer_eps{e}"] = score(
                    lambda xb, yb, eps=eps, white=white, twin=twin: white(twin, xb, yb, eps), twin
                )
            elif cfg.transfer:
                metrics[f"acc_transfer_eps{e}"] = metrics[f"acc_pgd_eps{e}"]
            # the robust accuracy estimate: the strongest of the attacks run (masked gradients can only raise the others)
            metrics[f"acc_worst_eps{e}"] = min(v for k, v in metrics.items() if k.endswith(f"_eps{e}"))
        for sigma in cfg.noise_sigmas:
            metrics[f"acc_noise_sigma{milli(sigma)}"] = score(lambda xb, yb, sigma=sigma: noisy(xb, sigma, generator))
        if self.twin is not None:
            metrics["twin_test_accuracy"] = adversarial_accuracy(
                self.twin.model, self.data.x_test, self.data.y_test, lambda xb, yb: xb, batch
            )
        return metrics

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, checkpoint_dir: str) -> str:  # type: ignore[override]
        state = {
            "config": self.cfg.model_dump(),
            "epoch": self.epoch,
            "learner": self.learner.state(),
            "twin": self.twin.state() if self.twin is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }
        path = Path(checkpoint_dir) / CHECKPOINT_FILE
        partial_path = path.with_suffix(".partial")
        torch.save(state, partial_path)
        os.replace(partial_path, path)  # a checkpoint is whole or absent
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:  # type: ignore[override]
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)
        self.learner.restore(state["learner"])
        if self.twin is not None:
            if state["twin"] is None:
                raise ValueError(f"checkpoint in {checkpoint_dir} has no ReLU twin but this trial trains one (transfer)")
            self.twin.restore(state["twin"])
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        self._iteration = self.epoch  # Tune's training_iteration follows the epoch when restored by path
