"""``CheckpointableTrainable``: the Ray Tune lifecycle shared by every research trainable.

The base owns ``setup`` (typed config, seeding, device), ``step`` (one epoch),
``save_checkpoint`` and ``load_checkpoint`` (format of :mod:`trainables.checkpoint`).
A subclass sets ``config_model`` and implements small hooks:

* ``build(config)``      create ``self.model``, ``self.optimizer`` and optionally
                         ``self.scheduler`` / ``self.scaler``; data; use ``self.generator``
                         (CPU ``torch.Generator``) for shuffling and augmentation
* ``batch_loss(x)``      per-sample loss of a batch of ``self.x_train`` (the base's
                         ``train_epoch`` shuffles, steps and averages); or override
                         ``train_epoch()`` for other data
* ``evaluate()``         validation metrics (floats)
* ``write_pictures(d)``  PNG files into folder ``d``
* ``state_dict()`` / ``load_state_dict(s)``  extra subclass state (default: none)

Runs under Ray Tune or standalone: ``MyTrainable(config={...})`` then ``train()``,
``save(dir)``, ``restore(dir)``.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, ClassVar

import numpy as np
import pydantic
import torch
from ray import tune

from trainables import checkpoint, runtime
from trainables.config import TrainableConfig

__all__ = ["CheckpointableTrainable", "seed_everything", "select_device"]


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(preference: str = "auto") -> torch.device:
    """CUDA when requested/available (CUDA_VISIBLE_DEVICES decides which), else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


log = logging.getLogger(__name__)


class CheckpointableTrainable(tune.Trainable):
    """Base of the research trainables: one ``step()`` = one epoch."""

    config_model: ClassVar[type[TrainableConfig]] = TrainableConfig

    # Set by setup()/build(); listed for readers.
    cfg: TrainableConfig
    device: torch.device
    generator: torch.Generator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None = None
    scaler: Any | None = None
    x_train: torch.Tensor  # set by build() of subclasses that use the default train_epoch()

    # ----------------------------------------------------------------- lifecycle
    def setup(self, config: dict[str, Any]) -> None:
        # Ray's own bookkeeping keys look like "__trial_info__"; they are not ours.
        before = set(vars(self))
        user_config = {k: v for k, v in config.items() if not k.startswith("__")}
        try:
            self.cfg = self.config_model.model_validate(user_config)
        except pydantic.ValidationError as error:
            valid = ", ".join(self.config_model.model_fields)
            raise ValueError(f"invalid {type(self).__name__} config: {error}\nvalid keys: {valid}") from None
        seed_everything(self.cfg.seed)
        self.device = select_device(self.cfg.device)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.epoch = 0
        self.global_step = 0
        self.last_eval: dict[str, float] = {}
        self.build(self.cfg)
        self._trial_attributes = (set(vars(self)) - before) | {"_trial_attributes"}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Ray Tune reuses this trial's process for the next trial: forget everything `setup` and `build` made
        (model, optimizer, data, RNGs, a fallback note) and set up again, as a fresh process would."""
        for name in {*getattr(self, "_trial_attributes", ()), "fallback_from", "_fallback_note", "_checkpoint_request_seen"}:
            vars(self).pop(name, None)
        self.setup(new_config)
        return True

    def _checkpoint_requested(self) -> bool:
        """True once per request of the job (trainables.runtime: the file the job writes on SLURM's signal)."""
        at = runtime.checkpoint_requested_at()
        if at is None:
            return False
        if at <= getattr(self, "_checkpoint_request_seen", 0.0):
            return False
        self._checkpoint_request_seen = at
        return True

    def _read_good_state(self, checkpoint_dir: str) -> dict[str, Any]:
        """The newest checkpoint that verifies: `checkpoint_dir`, else the trial's previous ones (kept K)."""
        try:
            return checkpoint.read_state(checkpoint_dir)
        except checkpoint.CheckpointCorruptError as first:
            storage = getattr(getattr(self, "_storage", None), "trial_fs_path", None)
            for older in checkpoint.fallback_candidates(checkpoint_dir, storage):
                try:
                    state = checkpoint.read_state(older)
                except checkpoint.CheckpointCorruptError as exc:
                    log.warning("checkpoint %s is corrupt too (%s)", older, exc)
                    continue
                log.warning(
                    "checkpoint %s is corrupt (%s); resuming from the previous good one, %s (epoch %s)",
                    checkpoint_dir,
                    first,
                    older,
                    state["epoch"],
                )
                self.fallback_from = str(checkpoint_dir)
                self._fallback_note = f"{checkpoint_dir} is corrupt ({first}); resumed from {older} (epoch {state['epoch']})"
                return state
            raise

    def step(self) -> dict[str, Any]:
        self.epoch += 1
        metrics: dict[str, Any] = {"epoch": self.epoch}
        metrics.update(self.train_epoch())
        if self._evaluate_now():
            self.last_eval = {name: float(value) for name, value in self.evaluate().items()}
        # Between evaluations the last values are repeated, so that every metric is
        # present in every result (schedulers and the metric validation rely on it).
        metrics.update(self.last_eval)
        if self.epoch >= self.cfg.epochs:
            metrics["done"] = True
        # The job got SLURM's signal (preemption, time limit): ask Tune for a checkpoint now.
        if self._checkpoint_requested():
            metrics["should_checkpoint"] = True
        # A corrupt checkpoint this attempt fell back from, once (the tracker tags the run with it).
        note = self.__dict__.pop("_fallback_note", None)
        if note:
            metrics[runtime.CHECKPOINT_FALLBACK_KEY] = note
        # Where the trial runs (strings: the tracker turns them into run tags, not metrics).
        metrics["device"] = str(self.device)
        metrics["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return metrics

    # Ray's stub declares dicts; its function API passes (and accepts back) a checkpoint directory path.
    def save_checkpoint(self, checkpoint_dir: str) -> str:  # type: ignore[override]
        checkpoint.write_state(checkpoint_dir, self._full_state())
        self.write_pictures(checkpoint.pictures_dir(checkpoint_dir))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:  # type: ignore[override]  # a directory path, see above
        state = self._read_good_state(checkpoint_dir)
        # The trial's current config wins over the saved one: PBT restores another
        # trial's checkpoint under a mutated config (the saved one is for provenance).
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["data_order"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.last_eval = dict(state["extra"].get("last_eval", {}))
        self.load_state_dict(state["extra"].get("trainable", {}))
        checkpoint.restore_rng_state(state["rng"])
        # One step() is one epoch; keeps training_iteration right when restored by path.
        self._iteration = self.epoch

    # ----------------------------------------------------------------- hooks
    def build(self, config: TrainableConfig) -> None:
        """Create model, optimizer (+ scheduler/scaler) and data on ``self.device``."""
        raise NotImplementedError

    def train_epoch(self) -> dict[str, float]:
        """One pass over ``self.x_train`` in an order drawn from ``self.generator``.

        Subclasses with in-memory tensors only give :meth:`batch_loss`; others override this.
        """
        self.model.train()
        order = torch.randperm(self.x_train.shape[0], generator=self.generator)
        loss_sum, n_samples = 0.0, 0
        for batch_index in torch.split(order, self.cfg.batch_size):  # type: ignore[attr-defined]
            loss = self.batch_loss(self.x_train[batch_index.to(self.device)])
            self.optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            self.optimizer.step()
            self.global_step += 1
            loss_sum += float(loss.detach().sum())
            n_samples += loss.shape[0]
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        return {"train_loss": loss_sum / n_samples, "lr": float(lr)}

    def batch_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample training loss of one batch; all randomness from ``self.generator``."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics; must not consume ``self.generator`` or the global RNGs."""
        raise NotImplementedError

    def write_pictures(self, directory: Any) -> None:
        """Write PNG figures into ``directory`` (default: none)."""

    def state_dict(self) -> dict[str, Any]:
        """Extra subclass state beyond model/optimizer/scheduler/scaler/generator."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    # ----------------------------------------------------------------- private
    def _evaluate_now(self) -> bool:
        every = self.cfg.eval_every
        return self.epoch == 1 or self.epoch % every == 0 or self.epoch >= self.cfg.epochs

    def _full_state(self) -> dict[str, Any]:
        return {
            "format_version": checkpoint.FORMAT_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "data_order": self.generator.get_state(),
            "rng": checkpoint.capture_rng_state(),
            "extra": {"last_eval": dict(self.last_eval), "trainable": self.state_dict(), "identity": self._identity()},
        }

    def _identity(self) -> dict[str, str]:
        """The run-identity record stamped into every checkpoint: which trial, which MLflow run, which
        attempt (SLURM job, restart, fencing token) wrote it. Strings only (weights_only loading)."""
        trial_id = str(getattr(self, "trial_id", "") or "")
        return {
            "trial_id": trial_id,
            "mlflow_run_id": runtime.run_id_of(trial_id),
            "attempt_token": runtime.attempt_token(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
            "epoch": str(self.epoch),
        }
