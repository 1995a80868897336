"""``WeightShareTrainable``: a plain Ray Tune trainable; one step = one epoch of SGD, then the test set.

Reports ``epoch``, ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``,
``best_test_accuracy`` (the original's metric: the best test accuracy so far), ``unique_params`` (the
count of unique parameters: tiled weights once), ``lr``, ``epoch_time_s`` (training and test) and
``samples_per_s`` (training images per second of the training pass). There is no separate validation
split: like the original, the study reports test accuracy.

A checkpoint (``state.pt``) holds everything a resumed trial needs to continue bit for bit on a CPU:
model, optimizer, scheduler, epoch, best accuracy, the data-order/augmentation generator and the global
torch/numpy/python RNGs (DropConnect draws from torch's).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from ray import tune

from weightshare.config import WeightShareConfig
from weightshare.data import Dataset, load_dataset, random_crop_flip
from weightshare.layers import unique_parameter_count
from weightshare.networks import build_network
from weightshare.sharing import Sharing

__all__ = ["CHECKPOINT_FILE", "WeightShareTrainable", "config_error_line"]

CHECKPOINT_FILE = "state.pt"
_MILESTONES = (150 / 350, 250 / 350)  # the original's MultiStepLR([150, 250]) of 350 epochs, as fractions
_LR_GAMMA = 0.1


def config_error_line(error: pydantic.ValidationError) -> str:
    """One line: each problem as `key: message`, then the valid keys."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
    )
    return f"invalid weightshare config: {problems} (valid keys: {', '.join(WeightShareConfig.model_fields)})"


class WeightShareTrainable(tune.Trainable):
    config_model = WeightShareConfig

    def setup(self, config: dict[str, Any]) -> None:
        try:  # Ray's own keys look like "__trial_info__"
            self.cfg = WeightShareConfig.model_validate({k: v for k, v in config.items() if not k.startswith("__")})
        except pydantic.ValidationError as error:
            raise ValueError(config_error_line(error)) from None
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("invalid weightshare config: device: cuda asked for, but torch sees no GPU here (use auto or cpu)")
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.generator = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation
        self.data = _to_device(load_dataset(cfg), self.device)
        sharing = Sharing(cfg.sharing, cfg.factor, cfg.repeat_shortcut, cfg.lightconv, cfg.dropconnect)
        self.model = build_network(cfg.network, sharing, self.data.in_channels, self.data.n_classes, cfg.blocks)
        self.model.to(self.device)
        self.unique_params = unique_parameter_count(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        milestones = sorted({max(1, round(cfg.epochs * m)) for m in _MILESTONES})
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, _LR_GAMMA)
        self.epoch = 0
        self.best_test_accuracy = 0.0

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.setup(new_config)  # sets every attribute a trial uses
        return True

    def step(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.epoch += 1
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy, train_s = self.train_epoch()
        self.scheduler.step()
        test_loss, test_accuracy = self.evaluate()
        self.best_test_accuracy = max(self.best_test_accuracy, test_accuracy)
        return {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "best_test_accuracy": self.best_test_accuracy,
            "unique_params": self.unique_params,
            "lr": lr,
            "epoch_time_s": time.perf_counter() - started,
            "samples_per_s": len(self.data.y_train) / train_s,
            "done": self.epoch >= self.cfg.epochs,
        }

    def train_epoch(self) -> tuple[float, float, float]:
        """Mean loss and accuracy over one shuffled pass, and its duration in seconds."""
        started = time.perf_counter()
        self.model.train()
        x_all, y_all = self.data.x_train, self.data.y_train
        order = torch.randperm(len(y_all), generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for index in torch.split(order, self.cfg.batch_size):
            x, y = x_all[index], y_all[index]
            if self.cfg.augment_on:
                x = random_crop_flip(x, self.generator)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        n = len(y_all)
        return float(loss_sum) / n, float(correct) / n, time.perf_counter() - started

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for x, y in zip(
            torch.split(self.data.x_test, self.cfg.eval_batch_size),
            torch.split(self.data.y_test, self.cfg.eval_batch_size),
            strict=True,
        ):
            logits = self.model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        n = len(self.data.y_test)
        return loss_sum / n, correct / n

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, checkpoint_dir: str) -> str:  # type: ignore[override]
        state = {
            "config": self.cfg.model_dump(),
            "epoch": self.epoch,
            "best_test_accuracy": self.best_test_accuracy,
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
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, path)  # a checkpoint is whole or absent
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:  # type: ignore[override]
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best_test_accuracy = float(state["best_test_accuracy"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        self._iteration = self.epoch  # Tune's training_iteration follows the epoch when restored by path


def _to_device(data: Dataset, device: torch.device) -> Dataset:
    return Dataset(
        data.x_train.to(device), data.y_train.to(device), data.x_test.to(device), data.y_test.to(device), data.n_classes
    )
