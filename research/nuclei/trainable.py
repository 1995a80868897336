"""``NucleiTrainable``: a plain Ray Tune trainable; one step = one epoch of Adam (cyclical LR) over the training
tiles, then the 4-class tile accuracy on the validation and test tiles and, at the last epoch or every
``detect_every``, detection by dense inference over the test patches (disc NMS, matching; nuclei.detect).

Reports ``epoch``, ``train_loss``, ``train_accuracy``, ``val_tile_accuracy``, ``tile_accuracy`` (test tiles),
``lr`` (at the epoch's start), ``samples_per_s`` (training tiles per second of the training pass),
``epoch_time_s`` (the whole step) and, when it detects: ``det_precision``, ``det_recall``, ``det_f1``,
``class_accuracy`` (on matched detections), ``acc_C`` / ``sens_C`` / ``spec_C`` for C in L, BE, ME, and
``detect_time_s``.

A checkpoint (``state.pt``) holds everything a resumed trial needs to continue bit for bit on a CPU: model,
optimiser, LR scheduler, epoch, the data-order/augmentation generator and the global torch/numpy/python RNGs.
The data (patches, split, tiles) are rebuilt from the config, deterministically. A checkpoint taken at an
epoch that detected also carries ``pictures/heatmap.png`` and ``pictures/detections.png`` (the first test
patch), which the orchestrator logs as the run's ``pictures/`` artifacts.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from ray import tune

from nuclei.config import NucleiConfig
from nuclei.data import TileSet, augment, load_patches, split_patches, tiles_from_patches
from nuclei.detect import Detections, MatchCounts, detect, match, metrics
from nuclei.network import TileNet, dense_logits
from nuclei.synthetic import Patch

__all__ = ["CHECKPOINT_FILE", "NucleiTrainable", "config_error_line"]

CHECKPOINT_FILE = "state.pt"


def config_error_line(error: pydantic.ValidationError) -> str:
    """One line: each problem as ``key: message``, then the valid keys."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
    )
    return f"invalid nuclei config: {problems} (valid keys: {', '.join(NucleiConfig.model_fields)})"


@dataclass(frozen=True)
class _Shown:
    """What the pictures show: the first test patch at the epoch that detected."""

    epoch: int
    patch: Patch
    cell_prob: np.ndarray
    detections: Detections
    matched: np.ndarray


class NucleiTrainable(tune.Trainable):
    config_model = NucleiConfig

    def setup(self, config: dict[str, Any]) -> None:
        try:  # Ray's own keys look like "__trial_info__"
            self.cfg = NucleiConfig.model_validate({k: v for k, v in config.items() if not k.startswith("__")})
        except pydantic.ValidationError as error:
            raise ValueError(config_error_line(error)) from None
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        patches = load_patches(cfg.data, cfg.data_root, cfg.n_patches, cfg.patch_size, cfg.data_seed)
        train, val, test = split_patches(len(patches), (cfg.train_fraction, cfg.val_fraction), cfg.data_seed)
        self.test_patches = [patches[i] for i in test][: cfg.detect_patches]
        margin = cfg.max_shift if cfg.augment else 0
        tiles = {
            "train": ([patches[i] for i in train], margin, 1),
            "val": ([patches[i] for i in val], 0, 2),
            "test": ([patches[i] for i in test], 0, 3),
        }
        self.tiles: dict[str, TileSet] = {
            name: tiles_from_patches(
                chosen, cfg.tile_size, cfg.background_per_patch, cfg.background_distance, cfg.data_seed * 10 + k, m
            ).to(self.device)
            for name, (chosen, m, k) in tiles.items()
        }
        pixels = np.concatenate([patches[i].image.reshape(-1, 3) for i in train])
        mean, std = tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0) + 1e-6)
        torch.manual_seed(cfg.seed)
        self.model = TileNet(cfg.tile_size, cfg.width, cfg.dropout, mean, std).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        batches = max(1, -(-len(self.tiles["train"]) // cfg.batch_size))
        self.scheduler = torch.optim.lr_scheduler.CyclicLR(
            self.optimizer,
            base_lr=cfg.lr * cfg.lr_min_factor,
            max_lr=cfg.lr,
            step_size_up=max(1, round(cfg.lr_cycle_epochs * batches / 2)),
            cycle_momentum=False,
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.shown: _Shown | None = None

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.setup(new_config)  # sets every attribute a trial uses
        return True

    def step(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.epoch += 1
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy, train_s = self.train_epoch()
        result: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_tile_accuracy": self.tile_accuracy(self.tiles["val"]),
            "tile_accuracy": self.tile_accuracy(self.tiles["test"]),
            "lr": lr,
            "samples_per_s": len(self.tiles["train"]) / train_s,
        }
        if self.cfg.detects_at(self.epoch):
            detect_started = time.perf_counter()
            result.update(self.detection_metrics())
            result["detect_time_s"] = time.perf_counter() - detect_started
        result["epoch_time_s"] = time.perf_counter() - started
        result["done"] = self.epoch >= self.cfg.epochs
        return result

    def train_epoch(self) -> tuple[float, float, float]:
        """Mean loss and accuracy over one shuffled (augmented) pass, and its duration in seconds."""
        started = time.perf_counter()
        cfg, model, tiles = self.cfg, self.model, self.tiles["train"]
        model.train()
        order = torch.randperm(len(tiles), generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for index in torch.split(order, cfg.batch_size):
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            x = augment(tiles, index, self.generator) if cfg.augment else tiles.x[index.to(self.device)]
            y = tiles.y[index.to(self.device)]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        n = len(tiles)
        return float(loss_sum) / n, float(correct) / n, time.perf_counter() - started

    @torch.no_grad()
    def tile_accuracy(self, tiles: TileSet) -> float:
        self.model.eval()
        x, y = tiles.centred()[: self.cfg.eval_tiles], tiles.y[: self.cfg.eval_tiles]
        if len(y) == 0:
            return 0.0
        correct = sum(
            int((self.model(xb).argmax(1) == yb).sum())
            for xb, yb in zip(x.split(self.cfg.eval_batch_size), y.split(self.cfg.eval_batch_size))
        )
        return correct / len(y)

    @torch.no_grad()
    def probabilities(self, patch: Patch) -> np.ndarray:
        """(4, H, W) softmax maps of the dense inference over ``patch``."""
        self.model.eval()
        image = torch.from_numpy(patch.image).permute(2, 0, 1).to(self.device)
        return torch.softmax(dense_logits(self.model, image), dim=0).cpu().numpy()

    def detection_metrics(self) -> dict[str, float]:
        cfg = self.cfg
        counts = MatchCounts()
        for i, patch in enumerate(self.test_patches):
            probs = self.probabilities(patch)
            found = detect(probs, cfg.nms_radius, cfg.threshold)
            got, matched = match(found, patch.centres, patch.labels, cfg.nms_radius)
            counts += got
            if i == 0:
                self.shown = _Shown(self.epoch, patch, 1.0 - probs[3], found, matched)
        return metrics(counts)

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, checkpoint_dir: str) -> str:  # type: ignore[override]
        state = {
            "config": self.cfg.model_dump(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }
        path = Path(checkpoint_dir) / CHECKPOINT_FILE
        partial_path = path.with_suffix(".partial")
        torch.save(state, partial_path)
        os.replace(partial_path, path)  # a checkpoint is whole or absent
        if self.shown is not None and self.shown.epoch == self.epoch:
            from nuclei.plots import PICTURES, write_pictures

            shown = self.shown
            write_pictures(Path(checkpoint_dir) / PICTURES, shown.patch, shown.cell_prob, shown.detections, shown.matched)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:  # type: ignore[override]
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        self._iteration = self.epoch  # Tune's training_iteration follows the epoch when restored by path
