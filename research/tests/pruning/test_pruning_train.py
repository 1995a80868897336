"""pruning/train.py as orch runs it (a subprocess with ORCH_CHECKPOINT_DIR): JSON metric lines, checkpoint and
resume bitwise identical to a run never stopped (killed mid-run, across the dense -> pruning boundary), SIGUSR1
acknowledged, and bad input as one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKSPACE = Path(__file__).resolve().parents[2]
TRAIN = WORKSPACE / "pruning" / "train.py"
# 2 dense epochs, then 3 fine-tuning epochs with iterative pruning to 75 % in 2 rounds (before fine-tuning epochs 0 and 1)
TINY = ["--dataset", "digits", "--epochs", "2", "--finetune-epochs", "3", "--sparsity", "0.75", "--schedule", "iterative",
        "--prune-rounds", "2", "--train-subset", "192", "--test-subset", "90", "--batch-size", "32", "--seed", "3"]  # fmt: skip
TIMING = {"epoch_time_s", "samples_per_s"}


def _env(checkpoint_dir: Path) -> dict[str, str]:
    repo = str(WORKSPACE.parent)  # orch's shared data readers, for --dataset mnist / cifar10
    return {**os.environ, "ORCH_CHECKPOINT_DIR": str(checkpoint_dir), "PYTHONPATH": repo}


def _train(checkpoint_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TRAIN), *TINY, *extra], cwd=WORKSPACE, env=_env(checkpoint_dir),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _metrics(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _without_timing(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def _assert_same_state(a: Path, b: Path) -> None:
    left, right = torch.load(a / "state.pt", weights_only=True), torch.load(b / "state.pt", weights_only=True)
    assert left["epoch"] == right["epoch"] == 5 and left["phase"] == right["phase"] == "finetune"
    for key in left["model"]:
        assert torch.equal(left["model"][key], right["model"][key]), key
    assert left["masks"].keys() == right["masks"].keys()
    assert all(torch.equal(left["masks"][k], right["masks"][k]) for k in left["masks"])
    for index, state in left["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], right["optimizer"]["state"][index]["momentum_buffer"])
    assert torch.equal(left["generator"], right["generator"]) and torch.equal(left["torch_rng"], right["torch_rng"])
    assert _without_timing([left["last_metrics"]]) == _without_timing([right["last_metrics"]])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The tiny run, never stopped: (its checkpoint folder, its metric lines)."""
    folder = tmp_path_factory.mktemp("straight")
    done = _train(folder)
    assert done.returncode == 0, done.stderr
    return folder, _metrics(done.stdout)


def test_metric_lines_and_the_pruning_schedule(straight: tuple[Path, list[dict]]) -> None:
    lines = straight[1]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4, 5]
    assert [m["prune_round"] for m in lines] == [0, 0, 1, 2, 2]
    assert [m["sparsity"] for m in lines][:2] == [0.0, 0.0] and lines[2]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert lines[3]["sparsity"] == lines[4]["sparsity"] == pytest.approx(0.75, abs=1e-4)  # kept through fine-tuning
    for m in lines:
        assert {"train_loss", "test_accuracy", "nonzero_params", "weight_bits", "epoch_time_s", "samples_per_s"} <= m.keys()
        assert m["weight_bits"] == 32 * m["nonzero_params"] and m["samples_per_s"] > 0
    last = lines[-1]
    for bits in (8, 4):
        for granularity in ("tensor", "channel"):
            assert 0 <= last[f"test_accuracy_int{bits}_{granularity}"] <= 1
            assert last[f"weight_bits_int{bits}_{granularity}"] < last["weight_bits"]
    assert last["weight_bits_int4_tensor"] < last["weight_bits_int8_tensor"] < last["weight_bits"]
    assert "test_accuracy_int8_tensor" not in lines[-2]


def test_killed_and_resumed_equals_uninterrupted_bitwise(tmp_path: Path, straight: tuple[Path, list[dict]]) -> None:
    # The same run, sent SIGUSR1 (orch's "checkpoint now": acknowledged, not fatal) after its 1st metrics line,
    # then killed (SIGKILL: no chance to save anything more) after its 2nd: the last dense epoch. Resuming
    # crosses the dense -> pruning boundary from the checkpoint.
    folder = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, str(TRAIN), *TINY], cwd=WORKSPACE, env=_env(folder),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    first = [json.loads(process.stdout.readline())]
    process.send_signal(signal.SIGUSR1)
    first.append(json.loads(process.stdout.readline()))
    process.kill()
    _, stderr = process.communicate(timeout=30)
    assert "SIGUSR1: the last finished epoch is checkpointed" in stderr, stderr
    saved = torch.load(folder / "state.pt", weights_only=True)["epoch"]
    assert 2 <= saved < 5, saved  # killed mid-run: not finished
    resumed = _train(folder)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {saved} of 5" in resumed.stderr
    after = _metrics(resumed.stdout)
    assert [m["epoch"] for m in after] == list(range(saved + 1, 6))
    expected = _without_timing(straight[1])
    assert _without_timing(first) == expected[:2] and _without_timing(after) == expected[saved:]
    _assert_same_state(straight[0], folder)

    again = _train(folder)  # resumed once finished: the final line again, nothing retrained
    assert again.returncode == 0 and _without_timing(_metrics(again.stdout)) == expected[-1:]


def _main_in_process(checkpoint_dir: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """train.main in this process (a subprocess per case is seconds of imports); the subprocess form is tested below."""
    from pruning import train

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        code = train.main([*TINY, *args, "--checkpoint-dir", str(checkpoint_dir)])
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--sparsity", "1.5"], "--sparsity must be in [0, 1), got 1.5"),
        (["--schedule", "gradual"], "argument --schedule: invalid choice: 'gradual'"),
        (["--prune-rounds", "9"], "--prune-rounds must be in 1..--finetune-epochs (3), got 9"),
        (["--quant-bits", "8,x"], "--quant-bits must be comma-separated integers"),
        (["--dataset", "mnist"], "--dataset mnist needs --data-root"),
        (
            ["--dataset", "cifar10", "--data-root", "/nonexistent-root"],
            "no cifar-10-batches-py/; fetch it with `orch data fetch cifar10",
        ),
        (["--dataset", "mnist", "--data-root", "/nonexistent-root"], "no train-images-idx3-ubyte"),
        (["--lr", "-1"], "--lr and --finetune-lr must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = _main_in_process(tmp_path / "c", args, capsys)
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("train.py: starting")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("train.py: error: "), stderr
    assert words in lines[0] and "Traceback" not in stderr, lines[0]


def test_a_corrupt_cifar_batch_and_bad_checkpoints_are_one_line(
    tmp_path: Path, straight: tuple[Path, list[dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    done = _train(tmp_path / "c", "--sparsity", "1.5")  # as orch runs it: exactly one line on stderr, exit 2
    assert done.returncode == 2 and done.stderr == "train.py: error: --sparsity must be in [0, 1), got 1.5\n"
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    code, stderr = _main_in_process(tmp_path / "c", ["--dataset", "cifar10", "--data-root", str(tmp_path / "data")], capsys)
    assert code == 2 and "data_batch_1: not a valid CIFAR batch: cannot unpickle" in stderr, stderr

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"truncated")
    code, stderr = _main_in_process(folder, [], capsys)
    assert code == 2 and "state.pt: unreadable checkpoint" in stderr and "Traceback" not in stderr

    other = tmp_path / "other"
    shutil.copytree(straight[0], other)
    code, stderr = _main_in_process(other, ["--finetune-epochs", "4", "--prune-rounds", "1"], capsys)  # other arguments
    assert code == 2 and "saved with other arguments (finetune_epochs, prune_rounds" in stderr, stderr


def test_mnist_and_cifar10_train_through_the_shared_readers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Small files in the real formats (IDX; CIFAR pickle batches) under a fetch root, one epoch each."""
    import pickle

    import numpy as np

    from trainables.data.mnist import write_idx

    rng = np.random.default_rng(0)
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    for prefix, n in (("train", 64), ("t10k", 20)):
        write_idx(
            tmp_path / "data" / "mnist" / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        write_idx(tmp_path / "data" / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    cifar = tmp_path / "data" / "cifar-10-batches-py"
    cifar.mkdir()
    for name, n in [*((f"data_batch_{i}", 8) for i in range(1, 6)), ("test_batch", 10)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (cifar / name).write_bytes(pickle.dumps(batch))
    for dataset in ("mnist", "cifar10"):
        args = ["--dataset", dataset, "--data-root", str(tmp_path / "data"), "--train-subset", "0", "--test-subset", "0"]
        code, stderr = _main_in_process(
            tmp_path / dataset, [*args, "--epochs", "1", "--finetune-epochs", "1", "--prune-rounds", "1"], capsys
        )
        assert code == 0, stderr
    # _main_in_process read stdout and stderr: the metrics are in the checkpoints too
    for dataset in ("mnist", "cifar10"):
        state = torch.load(tmp_path / dataset / "state.pt", weights_only=True)
        assert state["epoch"] == 2 and state["last_metrics"]["sparsity"] == pytest.approx(0.75, abs=1e-4)
        assert state["last_metrics"]["samples_per_s"] > 0 and "test_accuracy_int4_channel" in state["last_metrics"]
        first_conv = next(v for k, v in state["model"].items() if k.endswith("weight") and v.dim() == 4)
        assert first_conv.shape[1] == (1 if dataset == "mnist" else 3), dataset


def test_crop_flip_is_a_shifted_window_of_the_padded_image() -> None:
    from pruning.train import crop_flip

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    out = crop_flip(x, generator, pad=2)
    generator.set_state(state)  # the same draws, to rebuild the expected windows
    dy, dx = torch.randint(0, 5, (2,), generator=generator), torch.randint(0, 5, (2,), generator=generator)
    flip = torch.rand(2, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        window = padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 6]
        assert torch.equal(out[i], window.flip(-1) if flip[i] else window)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: --device cuda is valid here")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = _main_in_process(tmp_path / "c", ["--device", "cuda"], capsys)
    assert code == 2 and stderr.startswith("train.py: error: --device cuda: no CUDA device is visible here"), stderr
