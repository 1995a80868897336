"""AVAETrainable outside Ray: metrics, pictures, checkpoint format, exact resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainables import checkpoint
from trainables.avae.trainable import AVAETrainable

REPO_ROOT = Path(__file__).resolve().parents[2]

_RESUME_SCRIPT = """
import json, sys
from ray.tune.trainable import trainable
trainable.DEFAULT_STORAGE_PATH = sys.argv[3]
from trainables.avae.trainable import AVAETrainable
t = AVAETrainable(config=json.loads(sys.argv[1]))
t.restore(sys.argv[2])
results = [t.train() for _ in range(2)]
print(json.dumps([{k: r[k] for k in json.loads(sys.argv[4])} for r in results]))
"""


def _metrics(result: dict, names: list[str]) -> dict:
    return {name: result[name] for name in names}


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize("transform", ["rotation", "affine"])
def test_exact_resume_in_a_fresh_process(tiny_avae_config, tmp_path, transform):
    config = {**tiny_avae_config, "epochs": 4, "eval_every": 2, "transform": transform}
    straight = AVAETrainable(config=config)
    expected = [straight.train() for _ in range(4)]
    names = sorted(k for k in expected[-1] if k in _reported(config) | {"val_loss_affine"})
    assert "val_loss_affine" in names

    first = AVAETrainable(config=config)
    before = [first.train() for _ in range(2)]
    assert [_metrics(r, names) for r in before] == [_metrics(r, names) for r in expected[:2]]
    first.save(str(tmp_path / "ckpt"))

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESUME_SCRIPT,
            json.dumps(config),
            str(tmp_path / "ckpt"),
            str(tmp_path / "ray_results_child"),
            json.dumps(names + ["training_iteration"]),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    # Exact float equality on CPU: same weights, optimizer, scheduler, RNG and data order.
    assert [_metrics(r, names) for r in resumed] == [_metrics(r, names) for r in expected[2:]]
    assert [r["training_iteration"] for r in resumed] == [3, 4]
    assert resumed[-1]["done"] is True


def _reported(config: dict) -> set[str]:
    from trainables.registry import get_trainable_spec

    spec = get_trainable_spec("avae")
    return {"done"} | set(spec.metrics) | {f"val_loss_rot{d}" for d in config["eval_rotations_deg"]}


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize("mode", ["upright", "augmented", "train_opt"])
def test_one_epoch_reports_plain_float_metrics(tiny_avae_config, mode):
    config = {**tiny_avae_config, "epochs": 1, "train_mode": mode, "test_time_opt": mode != "upright"}
    result = AVAETrainable(config=config).step()
    assert result["epoch"] == 1 and result["done"] is True
    expected = {"train_loss", "lr", "val_loss", "val_loss_rot0", "val_loss_rot90"}
    expected |= {"orientation_r1", "orientation_r2"}
    for name in expected:
        assert type(result[name]) is float and math.isfinite(result[name]), name
    assert result["val_loss"] == pytest.approx((result["val_loss_rot0"] + result["val_loss_rot90"]) / 2)
    assert 0 <= result["orientation_r1"] <= 1 and 0 <= result["orientation_r2"] <= 1
    from trainables.registry import get_trainable_spec

    spec = get_trainable_spec("avae")
    assert all(spec.reports_metric(name) for name in expected)


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_checkpoint_layout_and_pictures(tiny_avae_config, tmp_path):
    t = AVAETrainable(config={**tiny_avae_config, "epochs": 1})
    t.train()
    t.save(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures", "state.pt", "state.pt.sha256"]
    pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert pictures == ["orientation_histogram.png", "reconstructions.png", "rotation_history.npz"]
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["format_version"] == checkpoint.FORMAT_VERSION
    assert state["epoch"] == 1 and state["global_step"] == 2  # 128 digits / batch 64
    assert state["config"]["train_subset"] == 128
    assert {"python", "numpy", "torch"} <= set(state["rng"])


def test_bad_config_fails_with_the_valid_keys(ray_results_in_tmp):
    with pytest.raises(ValueError, match="valid keys: .*latent_dim"):
        AVAETrainable(config={"latent_dims": 4})


def test_unknown_format_version_is_refused(tmp_path):
    torch.save({"format_version": 99}, tmp_path / checkpoint.STATE_FILE)
    with pytest.raises(checkpoint.CheckpointFormatError, match="version 99"):
        checkpoint.read_state(tmp_path)


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize("transform", ["rotation", "affine"])
def test_rotation_history_is_saved_per_evaluation(tiny_avae_config, tmp_path, transform):
    import numpy as np

    config = {**tiny_avae_config, "epochs": 3, "eval_every": 2, "transform": transform}
    t = AVAETrainable(config=config)
    for _ in range(3):  # evaluations at epochs 1, 2 (eval_every) and 3 (the last)
        t.train()
    t.save(str(tmp_path / "ckpt"))
    history = np.load(tmp_path / "ckpt" / "pictures" / "rotation_history.npz")
    n = tiny_avae_config["test_subset"]
    assert history["epochs"].tolist() == [1, 2, 3]
    assert history["phi"].shape == history["theta"].shape == (3, n)
    assert history["labels"].shape == (n,)
    assert ("params" in history) is (transform == "affine")
    if transform == "affine":
        assert history["params"].shape == (3, n, 2, 2)
    assert (tmp_path / "ckpt" / "pictures" / "rotation_history.npz").stat().st_size < 50_000
    # The history survives a restore: the next checkpoint still holds all evaluations.
    t2 = AVAETrainable(config={**config, "epochs": 4})
    t2.restore(str(tmp_path / "ckpt"))
    t2.train()
    assert t2.rotation_history()["epochs"].tolist() == [1, 2, 3, 4]
    assert torch.equal(t2.rotation_history()["theta"][:3], torch.from_numpy(history["theta"]))


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize(
    "options",
    [
        {"loss": "mse_sum_faithful"},
        {"kl": "log_sigma_faithful"},
        {"loss": "mse_sum_faithful", "kl": "log_sigma_faithful", "transform": "affine"},
        {"screen_precision": "bfloat16", "transform": "affine"},
    ],
)
def test_faithful_quirk_options_run(tiny_avae_config, options):
    config = {**tiny_avae_config, "epochs": 1, **options}
    result = AVAETrainable(config=config).step()
    for name in ("train_loss", "val_loss", "val_loss_affine", "orientation_r2"):
        assert math.isfinite(result[name]), name
    if options.get("loss") == "mse_sum_faithful":
        # The normalised background alone costs >= 0.4244^2 per pixel of the 24x24 image
        # wherever the sigmoid output is ~0 -- the floor the spec describes.
        assert result["val_loss"] > 100


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_affine_evaluation_can_be_switched_off(tiny_avae_config):
    result = AVAETrainable(config={**tiny_avae_config, "epochs": 1, "eval_affine": False}).step()
    assert "val_loss_affine" not in result and "val_loss" in result


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_good_one(tiny_avae_config, tmp_path: Path) -> None:
    """Tune keeps the last K checkpoints as checkpoint_NNNNNN; a corrupt newest one is detected by
    its SHA-256 and the trial resumes from the one before it."""
    from trainables import checkpoint as ckpt

    trainable = AVAETrainable(config={**tiny_avae_config, "epochs": 4})
    saved = {}
    for index in range(3):
        trainable.train()
        saved[index] = trainable.save_checkpoint(str(tmp_path / f"checkpoint_{index:06d}"))
    with open(Path(saved[2]) / "state.pt", "r+b") as handle:  # one flipped byte in the newest
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ckpt.CheckpointCorruptError, match="SHA-256"):
        ckpt.read_state(saved[2])
    restored = AVAETrainable(config={**tiny_avae_config, "epochs": 4})
    restored.load_checkpoint(saved[2])
    assert restored.epoch == 2 and restored.fallback_from == saved[2]
    # The next result says so, once (the tracker tags the trial's run with it).
    first, second = restored.train(), restored.train()
    assert (
        first["checkpoint_fallback"].startswith(f"{saved[2]} is corrupt")
        and f"resumed from {saved[1]}" in first["checkpoint_fallback"]
    )
    assert "checkpoint_fallback" not in second
    (Path(saved[1]) / "state.pt").write_bytes(b"truncated")  # the one before is broken too: go further back
    again = AVAETrainable(config={**tiny_avae_config, "epochs": 4})
    again.load_checkpoint(saved[2])
    assert again.epoch == 1
    (Path(saved[1]) / ckpt.CHECKSUM_FILE).unlink()  # without its checksum a garbled file is still caught by torch.load
    assert AVAETrainable(config={**tiny_avae_config, "epochs": 4})._read_good_state(saved[2])["epoch"] == 1  # noqa: SLF001
    (Path(saved[0]) / "state.pt").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointCorruptError):
        AVAETrainable(config={**tiny_avae_config, "epochs": 4}).load_checkpoint(saved[2])


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_no_search_loss_is_the_same_model_evaluated_without_the_search(tiny_avae_config):
    """One trained model gives Table 1's VAE row (val_loss_no_search) and AVAE row (val_loss): the
    no-search figure equals what a test_time_opt=false evaluation of the same weights reports."""
    searched = AVAETrainable(config={**tiny_avae_config, "epochs": 1, "test_time_opt": True})
    with_search = searched.step()
    assert with_search["val_loss"] < with_search["val_loss_no_search"]  # the search only ever helps

    plain = AVAETrainable(config={**tiny_avae_config, "epochs": 1, "test_time_opt": False})
    plain.model.load_state_dict(searched.model.state_dict())
    plain.epoch = searched.epoch
    without = plain.evaluate()
    assert with_search["val_loss_no_search"] == pytest.approx(without["val_loss"], rel=1e-6)
    assert without["val_loss_no_search"] == without["val_loss"]
