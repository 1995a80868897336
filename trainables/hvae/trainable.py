"""``HVAETrainable``: the hierarchical VAE of EXPERIMENTS.md 7 as a Ray Tune trainable.

Data: generated shape grids (``trainables.data.shapes2d``), ``n_train`` / ``n_val``
images from ``data_seed`` (fixed across trials and seeds). One step = one epoch.

Training loss per ``loss``: ``elbo`` decodes tiles from z_tile ~ q(z_tile|x);
``original`` decodes them from z_tile ~ p(z_tile|z_global), as his forward did.
Evaluation (fixed noise from its own generator, independent of training RNG):
  val_loss        the training loss on the validation grids (per image)
  val_elbo        hierarchical ELBO in nats per image (higher is better), for either loss
  val_kl_global, val_kl_tile   its KL terms (nats per image)
  val_mse         per-pixel MSE of the tile path, decode(mean of q(z_tile|x))
  val_mse_global  per-pixel MSE through the global latent, decode(mean of p(z_tile|mu_global))
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

import torch

from trainables.base import CheckpointableTrainable
from trainables.config import TrainableConfig
from trainables.data.shapes2d import ShapeOptions, make_shapes
from trainables.hvae.config import HVAEConfig
from trainables.hvae.loss import elbo_terms, original_terms, pixel_mse_per_image
from trainables.hvae.model import HVAE, HVAENoise
from trainables.hvae.pictures import plot_image_rows

__all__ = ["HVAETrainable"]

_EVAL_SEED_OFFSET = 10_007  # evaluation has its own generator, re-seeded every time
_EVAL_BATCH = 256
_PICTURE_IMAGES = 4


class HVAETrainable(CheckpointableTrainable):
    config_model = HVAEConfig
    cfg: HVAEConfig
    model: HVAE

    def build(self, config: TrainableConfig) -> None:
        config = cast(HVAEConfig, config)  # setup() validated it with config_model
        options = ShapeOptions(rand_fill=config.rand_fill, rand_outline=config.rand_outline)
        shapes = functools.partial(
            make_shapes, tile_size=config.tile_size, grid_size=config.grid_size, options=options, structured=config.structured
        )
        x_train, _ = shapes(config.n_train, 2 * config.data_seed)
        x_val, _ = shapes(config.n_val, 2 * config.data_seed + 1)
        self.x_train = torch.from_numpy(x_train).to(self.device)
        self.x_val = torch.from_numpy(x_val).to(self.device)
        self.model = HVAE(config.tile_size, config.grid_size, config.tile_latent_dim, config.global_latent_dim, config.hidden).to(
            self.device
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        step_size = max(1, round(config.epochs * config.lr_step_fraction))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=step_size, gamma=config.lr_gamma)

    # ----------------------------------------------------------------- training
    def batch_loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._loss_terms(x, self.generator)["loss"]

    def _noise(self, batch: int, generator: torch.Generator) -> HVAENoise:
        return HVAENoise.draw(batch, self.model.tile_shape, self.model.global_latent_dim, generator, self.device)

    def _loss_terms(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        noise = self._noise(x.shape[0], generator)
        if self.cfg.loss == "elbo":
            return elbo_terms(self.model(x, noise, "posterior"), x)
        out = self.model(x, noise, "prior")
        return original_terms(out, x, self.cfg.kl_global_weight, self.cfg.kl_tile_weight)

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        generator = self._eval_generator()
        sums: dict[str, float] = {}
        for x in torch.split(self.x_val, _EVAL_BATCH):
            batch = {"val_loss": self._loss_terms(x, generator)["loss"]}
            elbo = elbo_terms(self.model(x, self._noise(x.shape[0], generator)), x)
            batch["val_elbo"] = -elbo["loss"]
            batch["val_kl_global"] = elbo["kl_global"]
            batch["val_kl_tile"] = elbo["kl_tile"]
            mean = self.model(x)  # z = mu everywhere
            batch["val_mse"] = pixel_mse_per_image(mean.logits, x)
            batch["val_mse_global"] = pixel_mse_per_image(self.model.tiles.decode(mean.prior_mu), x)
            for name, values in batch.items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
        return {name: total / self.x_val.shape[0] for name, total in sums.items()}

    def _eval_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed + _EVAL_SEED_OFFSET)

    # ----------------------------------------------------------------- pictures
    @torch.no_grad()
    def write_pictures(self, directory: Path) -> None:
        self.model.eval()
        x = self.x_val[:_PICTURE_IMAGES]
        mean = self.model(x)
        title = f"HVAE ({self.cfg.loss} loss), epoch {self.epoch}"
        plot_image_rows(
            Path(directory) / "reconstructions.png",
            [
                ("input", x),
                ("tile path", torch.sigmoid(mean.logits)),
                ("via global", torch.sigmoid(self.model.tiles.decode(mean.prior_mu))),
            ],
            title,
        )
        samples = self.model.sample(2 * _PICTURE_IMAGES, self._eval_generator(), self.device)
        plot_image_rows(
            Path(directory) / "samples.png",
            [("z_global ~ N(0, I)", samples[:_PICTURE_IMAGES]), ("", samples[_PICTURE_IMAGES:])],
            title,
        )
