"""Checkpoint and resume are exact on a CPU: 2 epochs straight == 1 epoch, save, a fresh object, load, 1 more
(the weights, Adam's state, the cyclical LR and every metric but the timings, detection metrics included);
a checkpoint at an epoch that detected carries the pictures; and a folder dataset trains the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from nuclei.data import write_folder
from nuclei.synthetic import generate_patches
from nuclei.trainable import NucleiTrainable

CONFIG = {
    "n_patches": 8,
    "patch_size": 48,
    "tile_size": 14,
    "width": 4,
    "background_per_patch": 4,
    "batch_size": 16,
    "epochs": 2,
    "detect_every": 1,
    "device": "cpu",
    "seed": 5,
}
_TIMINGS = {"epoch_time_s", "samples_per_s", "detect_time_s"}
DETECTION = ["det_precision", "det_recall", "det_f1", "class_accuracy"] + [
    f"{m}_{c}" for c in ("L", "BE", "ME") for m in ("acc", "sens", "spec")
]


def test_resume_is_bitwise_equal_to_training_straight_through(tmp_path: Path) -> None:
    straight = NucleiTrainable(config=CONFIG)
    straight_results = [straight.train(), straight.train()]

    first = NucleiTrainable(config=CONFIG)
    first_result = first.train()
    first.save_checkpoint(str(tmp_path))
    torch.manual_seed(12345)  # the fresh process's RNGs are wherever they are: load must set them
    resumed = NucleiTrainable(config=CONFIG)
    resumed.load_checkpoint(str(tmp_path))
    resumed_result = resumed.train()

    for expected, got in zip(straight_results, [first_result, resumed_result], strict=True):
        assert all(key in expected for key in DETECTION + ["tile_accuracy", "val_tile_accuracy"])
        assert _metrics(expected) == _metrics(got)
    assert resumed_result["epoch"] == 2 and resumed_result["done"] is True
    for (name, x), (_, y) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(straight.optimizer.state[p]["exp_avg"], resumed.optimizer.state[q]["exp_avg"])
    assert straight.scheduler.state_dict()["last_epoch"] == resumed.scheduler.state_dict()["last_epoch"]
    for picture in ("heatmap.png", "detections.png"):
        assert (tmp_path / "pictures" / picture).stat().st_size > 1000


def test_reset_config_leaves_the_object_as_a_fresh_setup() -> None:
    other = {**CONFIG, "tile_size": 16, "seed": 1}
    reused = NucleiTrainable(config=CONFIG)
    reused.train()
    assert reused.reset_config(other)
    assert reused.epoch == 0 and reused.model.tile_size == 16
    reused_result = reused.train()  # before the fresh setup reseeds the global RNG (dropout draws from it)
    fresh = NucleiTrainable(config=other)
    assert _metrics(reused_result) == _metrics(fresh.train())


def test_a_folder_dataset_trains_as_its_synthetic_twin(tmp_path: Path) -> None:
    write_folder(generate_patches(6, 48, seed=0), tmp_path)
    config = {**CONFIG, "epochs": 1, "data": "folder", "data_root": str(tmp_path)}
    result = NucleiTrainable(config=config).train()
    assert 0.0 <= result["tile_accuracy"] <= 1.0 and "det_f1" in result


def _metrics(result: dict) -> dict:
    """The trial's own metrics but the timings (Tune adds its own keys: time, host, ...)."""
    own = ("train_", "tile_", "val_", "det_", "class_", "acc_", "sens_", "spec_", "epoch", "lr", "done")
    return {k: v for k, v in result.items() if k.startswith(own) and k not in _TIMINGS}
