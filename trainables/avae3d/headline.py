"""Small-scale headline check of the 3D AVAE (EXPERIMENTS.md 3.3) and throughput numbers.

    python -m trainables.avae3d.headline --epochs 15 --latent 4 8 --seeds 0 1 2

Variants (OR5): canonical = train and test in the data orientation, no search;
augmented = train on one-of-24 rotations, test on one-of-24 rotations, no search;
train_opt = one-of-24 rotations + exhaustive 24-way search in training and test.
Prints one line per run and a markdown table of the means over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

VARIANTS = {
    "canonical": {"augmentation": "none", "optimisation": "none"},
    "augmented": {"augmentation": "cube24", "optimisation": "none"},
    "train_opt": {"augmentation": "cube24", "optimisation": "exhaustive24"},
}
_METRICS = ("val_mse", "val_bce", "val_iou", "orientation_consistency")


def _run(config: dict) -> tuple[dict, float]:
    from trainables.avae3d.trainable import AVAE3DTrainable

    trainable = AVAE3DTrainable(config=config)
    n_train = trainable.x_train.shape[0]
    train_seconds = 0.0
    for _ in range(config["epochs"]):
        start = time.perf_counter()
        trainable.train_epoch()  # timed without evaluation
        train_seconds += time.perf_counter() - start
        trainable.epoch += 1
    trainable.last_eval = trainable.evaluate()
    return trainable.last_eval, n_train * config["epochs"] / train_seconds


def search_throughput(grid: int = 16, batch: int = 16, repeats: int = 2) -> float:
    """Objects per second of the exhaustive 24-way search (one batched pass per batch)."""
    from trainables.avae3d.model import VoxelVAE
    from trainables.avae3d.search import LossSpec, exhaustive_search

    model = VoxelVAE(8, grid)
    x = (torch.rand(batch, 1, grid, grid, grid) > 0.8).float()
    exhaustive_search(model, x, LossSpec())  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        exhaustive_search(model, x, LossSpec())
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--latent", type=int, nargs="+", default=[8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-per-class", type=int, default=48)
    parser.add_argument("--test-per-class", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from ray.tune.trainable import trainable

    trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="avae3d_headline_")
    print(
        f"torch threads {torch.get_num_threads()}; exhaustive-24 search: "
        f"{search_throughput():.0f} objects/s (16^3, batch 16, L=8)",
        flush=True,
    )
    table: dict[tuple[int, str], list[dict]] = {}
    for latent in args.latent:
        for name, variant in VARIANTS.items():
            for seed in args.seeds:
                config = {
                    **variant,
                    "latent_dim": latent,
                    "seed": seed,
                    "epochs": args.epochs,
                    "synthetic_train_per_class": args.train_per_class,
                    "synthetic_test_per_class": args.test_per_class,
                    "device": args.device,
                }
                metrics, samples_per_s = _run(config)
                table.setdefault((latent, name), []).append(metrics)
                shown = " ".join(f"{k}={metrics[k]:.3f}" for k in _METRICS)
                print(f"L={latent} {name} seed={seed} {shown} train={samples_per_s:.0f} obj/s", flush=True)
    print("\n| L | variant | " + " | ".join(_METRICS) + " |")
    print("|---|---|" + "---|" * len(_METRICS))
    for (latent, name), runs in table.items():
        cells = []
        for k in _METRICS:
            values = [run[k] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {latent} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
