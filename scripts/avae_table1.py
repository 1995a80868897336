"""Small-scale check of the AVAE paper's Table 1 on rotated scikit-learn digits.

Trains the three models behind the four Table 1 rows through ``AVAETrainable`` directly
(no Ray cluster, no orchestrator) and evaluates each on the 360 test digits rotated by
0, 20, ..., 180 degrees (EXPERIMENTS.md 2.6):

  VAE upright (no opt)   train_mode=upright, test_time_opt off
  AVAE upright           the same weights, with the test-time rotation search
  AVAE augmented         train_mode=augmented, test-time search
  AVAE train-opt         train_mode=train_opt, test-time search
  (augmented, no opt)    the augmented weights without the search (spec's extra column)

Prints the mean per-image loss (nats) per rotation, its average over rotations (Table 1's
metric), ``val_loss_affine`` and the orientation concentration R1 / R2.

    .venv/bin/python scripts/avae_table1.py --epochs 15 --jobs 2 --out /tmp/avae_table1.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROTATIONS = list(range(0, 181, 20))
MODELS = ("train_opt", "upright", "augmented")  # slowest first (parallel workers)
ROW_ORDER = [
    ("VAE upright (no opt)", "upright", False),
    ("AVAE upright", "upright", True),
    ("AVAE augmented", "augmented", True),
    ("AVAE train-opt", "train_opt", True),
    ("(augmented VAE, no opt)", "augmented", False),
]
METRICS = ["val_loss", *(f"val_loss_rot{d}" for d in ROTATIONS), "val_loss_affine", "orientation_r1", "orientation_r2"]


def train_and_evaluate(mode: str, epochs: int, latent_dim: int, seed: int, threads: int, subsets: tuple = (None, None)) -> dict:
    """Train one model; evaluate it with and without the test-time search."""
    import torch
    from ray.tune.trainable import trainable as ray_trainable

    torch.set_num_threads(threads)
    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="avae_table1_")
    from trainables.avae.trainable import AVAETrainable

    config = {
        "train_mode": mode,
        "epochs": epochs,
        "eval_every": epochs,
        "latent_dim": latent_dim,
        "seed": seed,
        "device": "cpu",
        "train_subset": subsets[0],
        "test_subset": subsets[1],
    }
    t = AVAETrainable(config=config)
    start = time.perf_counter()
    train_losses = []
    for _ in range(epochs):  # train_epoch() directly: no evaluation at epoch 1
        t.epoch += 1
        train_losses.append(t.train_epoch()["train_loss"])
    train_s = time.perf_counter() - start
    results = {}
    for opt in (True, False):
        t.test_search = dataclasses.replace(t.test_search, enabled=opt)
        start = time.perf_counter()
        metrics = t.evaluate()
        results[str(opt)] = {k: metrics[k] for k in METRICS}
        results[str(opt)]["eval_s"] = time.perf_counter() - start
    return {"mode": mode, "seed": seed, "train_s": train_s, "train_loss": train_losses[-1], "eval": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="models trained in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--out", type=Path, help="write all numbers as JSON here")
    parser.add_argument("--train-subset", type=int, help="smoke tests only")
    parser.add_argument("--test-subset", type=int, help="smoke tests only")
    args = parser.parse_args(argv)

    subsets = (args.train_subset, args.test_subset)
    tasks = [(m, args.epochs, args.latent_dim, s, args.threads, subsets) for s in args.seeds for m in MODELS]
    start = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(train_and_evaluate, *zip(*tasks)))
    else:
        runs = [train_and_evaluate(*task) for task in tasks]
    wall = time.perf_counter() - start

    if args.out:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "wall_s": wall}, indent=1)
        )
    by_key = {(r["mode"], r["seed"]): r for r in runs}
    header = ["model"] + [f"{d}°" for d in ROTATIONS] + ["avg", "affine", "R1", "R2"]
    lines = [
        f"epochs={args.epochs} latent_dim={args.latent_dim} seeds={args.seeds} "
        f"jobs={args.jobs} threads={args.threads} wall={wall:.0f}s",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for seed in args.seeds:
        for name, mode, opt in ROW_ORDER:
            m = by_key[(mode, seed)]["eval"][str(opt)]
            cells = [f"{m[f'val_loss_rot{d}']:.1f}" for d in ROTATIONS]
            cells += [
                f"**{m['val_loss']:.1f}**",
                f"{m['val_loss_affine']:.1f}",
                f"{m['orientation_r1']:.2f}",
                f"{m['orientation_r2']:.2f}",
            ]
            label = name if len(args.seeds) == 1 else f"{name}, seed {seed}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for r in runs:
        lines.append(
            f"train {r['mode']} seed {r['seed']}: {r['train_s']:.0f}s, final "
            f"train_loss {r['train_loss']:.1f}; eval {r['eval']['True']['eval_s']:.0f}s "
            f"(search) / {r['eval']['False']['eval_s']:.0f}s (no search)"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
