"""The AVAE on MNIST: IDX files written in the real format (plain and gzipped, local and through the S3 test
server) read back through the trainable, on the paper's 40x40 canvas; the data keys' validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from trainables.avae.config import AVAEConfig
from trainables.avae.data import load_avae_split, pad_to_canvas
from trainables.avae.model import ConvVAE
from trainables.data.mnist import MNIST_FILES, write_idx

N_TRAIN, N_TEST = 40, 20


def write_mnist(root: Path, gzipped: bool) -> dict[str, np.ndarray]:
    """A small MNIST in the four standard IDX files: digit-like strokes, 4 (train) or 2 (test) per class."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 4:24, 10 + label % 4 : 14 + label % 4] = 255  # a vertical stroke; position by class
            images[i, 4 + label : 8 + label, 6:22] = rng.integers(128, 256, dtype=np.uint8)
        images_name, labels_name = MNIST_FILES[split]
        suffix = ".gz" if gzipped else ""
        write_idx(root / f"{images_name}{suffix}", images)
        write_idx(root / f"{labels_name}{suffix}", labels)
        arrays[split] = images
    return arrays


def mnist_config(root: str, **changes) -> dict:
    return {
        "dataset": "mnist",
        "data_root": root,
        "epochs": 2,
        "eval_rotations_deg": [0, 90],
        "n_candidates": 4,
        "train_opt_steps": 1,
        "test_opt_steps": 1,
        "eval_affine": False,
        "device": "cpu",
        **changes,
    }


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_mnist_images_are_read_and_padded_to_the_papers_canvas(tmp_path, gzipped):
    arrays = write_mnist(tmp_path / "mnist", gzipped)
    split = load_avae_split(AVAEConfig(**mnist_config(str(tmp_path / "mnist"))))
    assert split.x_train.shape == (N_TRAIN, 1, 40, 40) and split.x_test.shape == (N_TEST, 1, 40, 40)
    # 28x28 in the middle of 40x40: 6 zero pixels on every side, the pixels themselves /255.
    expected = torch.from_numpy(arrays["test"].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(split.x_test[:, :, 6:34, 6:34], expected)
    assert split.x_test[:, :, :6].abs().sum() == 0 and split.x_test[:, :, 34:].abs().sum() == 0
    assert split.y_test.tolist() == [i % 10 for i in range(N_TEST)]


def test_subsets_are_stratified_and_the_canvas_is_configurable(tmp_path):
    write_mnist(tmp_path / "mnist", gzipped=True)
    split = load_avae_split(AVAEConfig(**mnist_config(str(tmp_path / "mnist"), train_subset=20, test_subset=10, canvas=32)))
    assert split.x_train.shape == (20, 1, 32, 32) and split.x_test.shape == (10, 1, 32, 32)
    assert sorted(np.bincount(split.y_test.numpy(), minlength=10).tolist()) == [1] * 10


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_the_trainable_trains_on_mnist_and_its_model_follows_the_canvas(tmp_path):
    from trainables.avae.trainable import AVAETrainable

    write_mnist(tmp_path / "mnist", gzipped=False)
    trainable = AVAETrainable(config=mnist_config(str(tmp_path / "mnist"), batch_size=16))
    try:
        assert trainable.model.canvas == 40
        first = trainable.step()
        assert np.isfinite(first["train_loss"]) and np.isfinite(first["val_loss"])
        assert {"val_loss_rot0", "val_loss_rot90"} <= first.keys()
        second = trainable.step()
        assert second["done"] is True
    finally:
        trainable.stop()


def test_digits_keep_the_spec_canvas_and_model():
    config = AVAEConfig(train_subset=20, test_subset=10)
    assert config.image_canvas == 24
    split = load_avae_split(config)
    assert split.x_train.shape[-2:] == (24, 24)
    assert ConvVAE(6, 24).encoder[5].in_features == 2304  # the spec's FC(2304 -> 256)
    assert ConvVAE(8, 40).encoder[5].in_features == 6400


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_the_papers_architecture_has_the_codes_parameter_count_and_trains_on_mnist(tmp_path):
    from trainables.avae.trainable import AVAETrainable

    # EXPERIMENTS.md 2.2, counted from the original code: 129,169 (L = 8), 167,585 (L = 16), 244,417 (L = 32).
    counts = {latent: sum(p.numel() for p in ConvVAE(latent, 40, "paper").parameters()) for latent in (8, 16, 32)}
    assert counts == {8: 129_169, 16: 167_585, 32: 244_417}
    write_mnist(tmp_path / "mnist", gzipped=True)
    trainable = AVAETrainable(
        config=mnist_config(str(tmp_path / "mnist"), architecture="paper", latent_dim=8, weight_decay=5e-4, epochs=1)
    )
    try:
        assert trainable.model.architecture == "paper"
        result = trainable.step()
        assert np.isfinite(result["val_loss"]) and result["done"] is True
    finally:
        trainable.stop()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"architecture": "paper"}, "architecture paper takes 40x40 images"),
        ({"dataset": "mnist"}, "dataset mnist needs data_root"),
        ({"data_root": "/data/mnist"}, "data_root is read only with dataset: mnist"),
        ({"dataset": "mnist", "data_root": "/d", "canvas": 42}, "multiple of 4"),
        ({"dataset": "mnist", "data_root": "/d", "canvas": 24}, "smaller than the mnist images"),
        ({"dataset": "cifar"}, "dataset"),
    ],
)
def test_bad_data_keys_are_refused_with_what_to_do(changes, words):
    with pytest.raises(pydantic.ValidationError, match=words):
        AVAEConfig(**changes)


def test_missing_idx_files_name_the_file_and_the_fetch_command(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*orch data fetch mnist"):
        load_avae_split(AVAEConfig(**mnist_config(str(tmp_path / "empty"))))


def test_pad_to_canvas_refuses_images_larger_than_it():
    with pytest.raises(ValueError, match="do not fit"):
        pad_to_canvas(torch.zeros(1, 1, 28, 28), 24)


def test_s3_data_root_through_the_s3_test_server(s3, tmp_path):
    write_mnist(tmp_path / "mnist", gzipped=True)
    s3.create_bucket(Bucket="avae-mnist-idx")  # not "data": test_data_storage.py lists that bucket
    for path in sorted((tmp_path / "mnist").iterdir()):
        s3.upload_file(str(path), "avae-mnist-idx", f"mnist/{path.name}")
    config = AVAEConfig(**mnist_config("s3://avae-mnist-idx/mnist", cache_dir=str(tmp_path / "cache")))
    split = load_avae_split(config)
    local = load_avae_split(AVAEConfig(**mnist_config(str(tmp_path / "mnist"))))
    assert torch.equal(split.x_train, local.x_train) and torch.equal(split.y_test, local.y_test)
    assert sorted(p.name for p in (tmp_path / "cache" / "s3").rglob("*.gz")) == sorted(
        p.name for p in (tmp_path / "mnist").iterdir()
    )
