"""``AVAE3DTrainable``: the 3D orientation AVAE (EXPERIMENTS.md 3.3) as a Ray Tune trainable.

One step = one epoch over the training objects. Per batch: present the objects
(``augmentation``: canonical / one of 24 cube rotations / free rotation), optionally
search the orientation with frozen weights (``optimisation``), then one VAE step on
the objects in the chosen orientation (sampled z unless ``posterior="deterministic"``).
Evaluation presents the test objects per ``eval_augmentation`` (a fixed draw), searches
per ``test_opt`` and reports loss/BCE/MSE (sums over voxels, mean over objects), IoU
and the 24-way orientation consistency.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch

from trainables.avae3d.config import AVAE3DConfig
from trainables.avae3d.data import load_voxel_split
from trainables.avae3d.evaluation import (
    orientation_consistency,
    present,
    reconstruct,
    reconstruction_metrics,
)
from trainables.avae3d.model import VoxelVAE
from trainables.avae3d.pictures import plot_slices
from trainables.avae3d.rotations import rotate_cube
from trainables.avae3d.search import (
    LossSpec,
    exhaustive_search,
    object_loss,
    restarts_search,
    transformed_loss,
)
from trainables.base import CheckpointableTrainable
from trainables.config import TrainableConfig

__all__ = ["AVAE3DTrainable"]

_EVAL_SEED_OFFSET = 10_007  # evaluation has its own generator, re-seeded every time
_ORIENTATION_SEED_OFFSET = 20_011
_PICTURE_OBJECTS = 8


class AVAE3DTrainable(CheckpointableTrainable):
    config_model = AVAE3DConfig
    cfg: AVAE3DConfig
    model: VoxelVAE

    def build(self, config: TrainableConfig) -> None:
        config = cast(AVAE3DConfig, config)  # setup() validated it with config_model
        data = load_voxel_split(config)
        self.classes = data.classes
        self.x_train = data.x_train.to(self.device)
        self.x_test = data.x_test.to(self.device)
        self.y_test = data.y_test
        self.model = VoxelVAE(config.latent_dim, config.grid_size, learned_sigma=config.posterior == "learned").to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        step = max(1, round(config.epochs * config.lr_step_fraction))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step, config.lr_gamma)
        bf16 = config.amp == "bf16"
        self.loss_spec = LossSpec(config.recon_loss, config.bce_gamma, True, bf16)
        self.search_spec = LossSpec(config.recon_loss, config.bce_gamma, config.search_loss == "elbo", bf16)

    # ----------------------------------------------------------------- training
    def batch_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-object training loss; all randomness from ``self.generator``."""
        cfg, g = self.cfg, self.generator
        x = present(x, cfg.augmentation, cfg, g)
        noise = None
        if cfg.posterior != "deterministic":
            noise = torch.randn(x.shape[0], cfg.latent_dim, generator=g).to(self.device)
        if cfg.optimisation == "restarts":
            transform, _ = restarts_search(
                self.model,
                x,
                self.search_spec,
                g,
                cfg.n_restarts,
                cfg.n_keep,
                cfg.opt_steps,
                cfg.opt_lr,
                cfg.max_translation,
            )
            return transformed_loss(self.model, x, transform, self.loss_spec, noise)[0]
        if cfg.optimisation == "exhaustive24":
            index, _ = exhaustive_search(self.model, x, self.search_spec)
            x = rotate_cube(x, index)
        return object_loss(self.model, x, self.loss_spec, noise)[0]

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        generator = self._eval_generator()
        sums: dict[str, float] = {}
        for start in range(0, self.x_test.shape[0], cfg.batch_size):
            x = present(self.x_test[start : start + cfg.batch_size], cfg.eval_presentation(), cfg, generator)
            r = reconstruct(self.model, x, cfg.eval_search(), self.loss_spec, self.search_spec, cfg, generator)
            for name, values in reconstruction_metrics(r).items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
        metrics = {name: total / self.x_test.shape[0] for name, total in sums.items()}
        metrics["orientation_consistency"] = orientation_consistency(
            self.model,
            self.x_test,
            self.y_test,
            self.search_spec,
            torch.Generator().manual_seed(cfg.seed + _ORIENTATION_SEED_OFFSET),
            cfg.batch_size,
        )
        return metrics

    def _eval_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed + _EVAL_SEED_OFFSET)

    # ----------------------------------------------------------------- pictures
    def write_pictures(self, directory: Path) -> None:
        cfg = self.cfg
        generator = self._eval_generator()
        x = present(self.x_test[:_PICTURE_OBJECTS], cfg.eval_presentation(), cfg, generator)
        r = reconstruct(self.model, x, cfg.eval_search(), self.loss_spec, self.search_spec, cfg, generator)
        plot_slices(
            Path(directory) / "slices.png",
            r.target,
            r.probs,
            title=f"3D AVAE {cfg.augmentation}/{cfg.optimisation}, epoch {self.epoch}",
        )
