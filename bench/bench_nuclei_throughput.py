"""Samples/s of the nuclei trainable (research/nuclei) per tile size: training tiles, and dense inference pixels.

Builds ``NucleiTrainable`` as a trial does (synthetic 96x96 patches, width 16, batch 64, augmentation on) and
times ``train_epoch()`` (one shuffled pass of Adam steps over the training tiles; CUDA-synchronized) and the
dense inference over the test patches (``probabilities()``: the FCN over each zero-padded patch, softmax; the
pixels of the patches per second), without Ray around them. One warm-up per case is not counted; repeats are
interleaved across the cases; figures are medians (min-max).

    nice -n 19 .venv/bin/python bench/bench_nuclei_throughput.py --threads 1
    python3 bench/bench_nuclei_throughput.py --device cuda     # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "research", Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from device_timing import device_name, timed  # noqa: E402

TILE_SIZES = (14, 20, 28, 36)


def build(tile_size: int, device: str, n_patches: int) -> Any:
    from nuclei.trainable import NucleiTrainable

    config = {"tile_size": tile_size, "device": device, "epochs": 1000, "n_patches": n_patches, "width": 16, "batch_size": 64}
    return NucleiTrainable(config=config)


def infer(trial: Any) -> None:
    for patch in trial.test_patches:
        trial.probabilities(patch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-sizes", nargs="*", type=int, default=list(TILE_SIZES))
    parser.add_argument("--patches", type=int, default=80, help="synthetic patches (60 %% train, 25 %% test)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_nuclei_throughput: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    from ray.tune.trainable import trainable as ray_trainable

    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="bench_nuclei_")
    torch.set_num_threads(args.threads)
    built = {t: build(t, args.device, args.patches) for t in args.tile_sizes}
    rates: dict[int, dict[str, list[float]]] = {t: {"train": [], "dense": []} for t in built}
    for trial in built.values():  # warm-up
        trial.train_epoch()
        infer(trial)
    for _ in range(args.repeats):
        for tile, trial in built.items():
            rates[tile]["train"].append(len(trial.tiles["train"]) / timed(trial.train_epoch, args.device))
            pixels = sum(p.height * p.width for p in trial.test_patches)
            rates[tile]["dense"].append(pixels / timed(lambda trial=trial: infer(trial), args.device))
    any_trial = next(iter(built.values()))
    print(
        f"# nuclei throughput: {device_name(args.device)} ({args.device}), torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), width 16, batch 64, {len(any_trial.tiles['train'])} training tiles, "
        f"{len(any_trial.test_patches)} test patches of 96x96, {args.repeats} interleaved repeats, medians (min-max)"
    )
    print(f"{'tile':<8} {'train samples/s':>24} {'dense pixels/s':>28}")
    for tile in built:
        cells = [
            f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})" for v in (rates[tile]["train"], rates[tile]["dense"])
        ]
        print(f"{tile:<8} {cells[0]:>24} {cells[1]:>28}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
