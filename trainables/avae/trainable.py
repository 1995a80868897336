"""``AVAETrainable``: the AVAE experiment (EXPERIMENTS.md 2.6) as a Ray Tune trainable.

One step = one epoch over the training digits, then (every ``eval_every`` epochs)
evaluation on the test digits rotated by each of ``eval_rotations_deg``.

Training per ``train_mode``:
  upright    plain VAE (sampled z) on upright digits
  augmented  plain VAE on digits rotated by uniform random angles
  train_opt  digits rotated by uniform random angles; per batch, the transform search
             (frozen weights, z = mu) picks theta* (or M* for ``transform: affine``),
             then an ordinary VAE step through A_theta* (sampled z)

Reported per evaluation: ``val_loss_rot<deg>``, ``val_loss`` (their mean: Table 1's
metric), ``val_loss_no_search`` (the same mean with theta = 0: the plain VAE that the
model is without its search), ``val_loss_affine`` (if ``eval_affine``), ``orientation_r1`` / ``_r2``.
Checkpoint pictures: ``reconstructions.png``, ``orientation_histogram.png`` and
``rotation_history.npz`` (the transform chosen per test digit at every evaluation so far,
like the original's ``rot_dict[epoch]``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import cast

import torch

from trainables.avae.config import AVAEConfig
from trainables.avae.data import load_avae_split
from trainables.avae.evaluation import (
    InnerSearch,
    Orientations,
    affine_losses,
    find_transforms,
    mean_resultant_length,
    orientations,
    rotation_losses,
)
from trainables.avae.loss import Objective
from trainables.avae.model import ConvVAE
from trainables.avae.pictures import (
    plot_orientation_histogram,
    plot_reconstructions,
    save_rotation_history,
)
from trainables.avae.transforms import avae_loss, optimise_transform, rotate
from trainables.base import CheckpointableTrainable
from trainables.config import TrainableConfig

__all__ = ["AVAETrainable"]

_EVAL_SEED_OFFSET = 10_007  # evaluation has its own generator, re-seeded every time
_LR_GAMMA = 0.3  # StepLR(epochs / 3, 0.3) per the spec
_PICTURE_DIGITS = 10
_PICTURE_ROTATIONS = 4
_AFFINE_EVAL_SEED_OFFSET = 20_011  # the affine perturbations of val_loss_affine
HISTORY_FILE = "rotation_history.npz"


class AVAETrainable(CheckpointableTrainable):
    config_model = AVAEConfig
    cfg: AVAEConfig
    model: ConvVAE

    def build(self, config: TrainableConfig) -> None:
        config = cast(AVAEConfig, config)  # setup() validated it with config_model
        data = load_avae_split(config)
        self.x_train = data.x_train.to(self.device)
        self.x_test = data.x_test.to(self.device)
        self.y_test = data.y_test
        self.model = ConvVAE(config.latent_dim, config.image_canvas, config.architecture).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, config.epochs // 3), gamma=_LR_GAMMA)
        self.objective = Objective(recon=config.loss, kl=config.kl)
        self.test_search = InnerSearch(
            enabled=config.test_time_opt,
            n_candidates=config.n_candidates,
            n_steps=config.test_opt_steps,
            lr=config.opt_lr,
            transform=config.transform,
            objective=self.objective,
            screen_precision=config.screen_precision,
        )
        self._orientations: Orientations | None = None  # of the last evaluate()
        self._orientations_epoch = -1
        # epoch -> Orientations found by evaluate() at that epoch (the rotation history)
        self._history: dict[int, Orientations] = {}

    # ----------------------------------------------------------------- training
    def batch_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image training loss (sampled z); all randomness from ``self.generator``."""
        cfg, g = self.cfg, self.generator
        noise = torch.randn(x.shape[0], cfg.latent_dim, generator=g).to(self.device)
        objective = self.objective
        if cfg.train_mode == "upright":
            return avae_loss(self.model, x, None, noise, objective=objective)
        phi = (torch.rand(x.shape[0], generator=g) * 2 * math.pi).to(self.device)
        x = rotate(x, phi)
        if cfg.train_mode == "augmented":
            return avae_loss(self.model, x, None, noise, objective=objective)
        params, _ = optimise_transform(
            self.model,
            x,
            cfg.transform,
            cfg.n_candidates,
            cfg.train_opt_steps,
            cfg.opt_lr,
            g,
            objective=objective,
            screen_precision=cfg.screen_precision,
        )
        return avae_loss(self.model, x, params, noise, transform=cfg.transform, objective=objective)

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        per_rotation = rotation_losses(
            self.model,
            self.x_test,
            self.cfg.eval_rotations_deg,
            self.test_search,
            self._eval_generator(),
        )
        # Orientation metrics always use the search: they ask which orientation the
        # model prefers, which theta = 0 cannot tell.
        found = orientations(self.model, self.x_test, self.y_test, self._orientation_search(), self._eval_generator())
        self._orientations, self._orientations_epoch = found, self.epoch
        self._history[self.epoch] = found
        metrics = {f"val_loss_rot{deg}": loss for deg, loss in per_rotation.items()}
        metrics["val_loss"] = sum(per_rotation.values()) / len(per_rotation)
        # The same model with theta = 0 (a plain VAE): with test_time_opt, Table 1's VAE row and its
        # AVAE-upright row come from one trained model, so one upright trial gives both.
        if self.test_search.enabled:
            plain = rotation_losses(
                self.model,
                self.x_test,
                self.cfg.eval_rotations_deg,
                replace(self.test_search, enabled=False),
                self._eval_generator(),
            )
            metrics["val_loss_no_search"] = sum(plain.values()) / len(plain)
        else:
            metrics["val_loss_no_search"] = metrics["val_loss"]
        if self.cfg.eval_affine:
            generator = torch.Generator().manual_seed(self.cfg.seed + _AFFINE_EVAL_SEED_OFFSET)
            losses = affine_losses(self.model, self.x_test, self.test_search, generator)
            metrics["val_loss_affine"] = float(losses.mean())
        metrics["orientation_r1"] = mean_resultant_length(found.psi, found.labels, 1)
        metrics["orientation_r2"] = mean_resultant_length(found.psi, found.labels, 2)
        return metrics

    def _eval_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed + _EVAL_SEED_OFFSET)

    def _orientation_search(self) -> InnerSearch:
        cfg = self.cfg
        return InnerSearch(
            True,
            cfg.n_candidates,
            cfg.test_opt_steps,
            cfg.opt_lr,
            cfg.transform,
            self.objective,
            cfg.screen_precision,
        )

    # ----------------------------------------------------------------- rotation history
    def rotation_history(self) -> dict[str, torch.Tensor]:
        """The transform chosen per test digit at every evaluation so far (CPU tensors):
        ``epochs`` (E,), ``labels`` (N,), ``phi`` / ``theta`` (E, N) radians, and for
        ``transform: affine`` ``params`` (E, N, 2, 2). Empty before the first evaluation."""
        if not self._history:
            return {}
        epochs = sorted(self._history)
        found = [self._history[e] for e in epochs]
        history = {
            "epochs": torch.tensor(epochs, dtype=torch.int32),
            "labels": found[-1].labels.to(torch.int8),
            "phi": torch.stack([f.phi for f in found]),
            "theta": torch.stack([f.theta for f in found]),
        }
        if found[-1].params is not None:
            # One transform kind per trial: affine searches give params at every evaluation.
            history["params"] = torch.stack(cast(list[torch.Tensor], [f.params for f in found]))
        return history

    def state_dict(self) -> dict:
        return {"rotation_history": self.rotation_history()}

    def load_state_dict(self, state: dict) -> None:
        history = state.get("rotation_history") or {}
        self._history = {}
        for i, epoch in enumerate(history.get("epochs", torch.zeros(0)).tolist()):
            params = history["params"][i] if "params" in history else None
            self._history[int(epoch)] = Orientations(
                phi=history["phi"][i],
                theta=history["theta"][i],
                labels=history["labels"].long(),
                params=params,
            )

    # ----------------------------------------------------------------- pictures
    def write_pictures(self, directory: Path) -> None:
        if self._orientations is None or self._orientations_epoch != self.epoch:
            # Stale or missing (e.g. right after a restore): same result evaluate() gives.
            self._orientations = orientations(
                self.model,
                self.x_test,
                self.y_test,
                self._orientation_search(),
                self._eval_generator(),
            )
            self._orientations_epoch = self.epoch
        plot_orientation_histogram(
            Path(directory) / "orientation_histogram.png",
            self._orientations.psi,
            self._orientations.labels,
            title=f"AVAE {self.cfg.train_mode}, epoch {self.epoch}: ψ = φ + θ* per class",
        )
        x = self.x_test[:_PICTURE_DIGITS]
        rotations = self.cfg.eval_rotations_deg
        shown = rotations[:: max(1, math.ceil(len(rotations) / _PICTURE_ROTATIONS))]
        inputs, thetas, generator = {}, {}, self._eval_generator()
        for deg in shown:
            phi = torch.full((x.shape[0],), math.radians(deg), device=self.device)
            inputs[deg] = rotate(x, phi)
            thetas[deg], _ = find_transforms(self.model, inputs[deg], self.test_search, generator)
        plot_reconstructions(
            Path(directory) / "reconstructions.png",
            self.model,
            inputs,
            thetas,
            transform=self.cfg.transform,
            objective=self.objective,
        )
        history = self.rotation_history()
        if history:
            save_rotation_history(Path(directory) / HISTORY_FILE, history)
