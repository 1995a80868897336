"""GPU-hours a sweep of the AVAE at the paper's scale would take, estimated from a measured GPU throughput.

No GPU is needed: the measured samples/s of the spec network (24x24 canvas) on a GPU (docs/benchmarks.md,
an H200) are scaled by the floating-point work per image of a forward + backward pass, counted with
torch.utils.flop_counter for the spec network and for the one the sweep uses (e.g. the paper's, 40x40).
Scaling by FLOPs assumes the GPU is compute-bound; networks this small are often launch-bound, where the
bigger one costs less than its FLOP ratio, so the estimate errs long.

    .venv/bin/python bench/estimate_avae_gpu_hours.py conf/sweeps/avae-table1-mnist-gpu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.avae.model import ConvVAE  # noqa: E402

# H200, bench_trainable_throughput.py --device cuda --scale 4 (docs/benchmarks.md): spec network, 24x24.
MEASURED_SAMPLES_PER_S = {"upright": 10_755.0, "augmented": 10_755.0, "train_opt": 1_291.0}
MEASURED_ON = "NVIDIA H200, spec network at 24x24 (docs/benchmarks.md)"
MNIST_TRAIN = 60_000


def gflop_per_image(latent_dim: int, canvas: int, architecture: str) -> float:
    """Forward + backward GFLOP per image of one VAE training pass."""
    model = ConvVAE(latent_dim, canvas, architecture)
    x = torch.rand(16, 1, canvas, canvas)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        tensors = out if isinstance(out, tuple) else (out,)
        sum(t.sum() for t in tensors if torch.is_tensor(t)).backward()
    return counter.get_total_flops() / 16 / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    args = parser.parse_args()
    sweep = yaml.safe_load(args.sweep.read_text())
    space = sweep["search_space"]
    modes = space["train_mode"]["grid"] if isinstance(space["train_mode"], dict) else [space["train_mode"]]
    seeds = len(space["seed"]["grid"]) if isinstance(space.get("seed"), dict) else 1
    latents = space["latent_dim"]["grid"] if isinstance(space.get("latent_dim"), dict) else [space.get("latent_dim", 8)]
    architecture, canvas = space.get("architecture", "spec"), space.get("canvas", 40)
    samples = (space.get("train_subset") or MNIST_TRAIN) * space["epochs"]

    reference = gflop_per_image(6, 24, "spec")
    print(f"measured: {MEASURED_ON}: {MEASURED_SAMPLES_PER_S}; spec network {reference:.4f} GFLOP/image (fwd+bwd)")
    total_h = 0.0
    longest_h = 0.0
    for latent in latents:
        ratio = gflop_per_image(latent, canvas, architecture) / reference
        for mode in modes:
            rate = MEASURED_SAMPLES_PER_S[mode] / ratio
            hours = samples / rate / 3600
            total_h += hours * seeds
            longest_h = max(longest_h, hours)
            print(
                f"L={latent:<3} {mode:<10} {architecture}@{canvas}: {ratio:.2f}x the FLOPs -> {rate:,.0f} samples/s, {hours:.2f} h a trial"
            )
    trials = len(latents) * len(modes) * seeds
    print(f"{args.sweep.name}: {trials} trials, training {samples:,} samples each: about {total_h:.1f} GPU-hours")
    print(f"(evaluations not counted; the longest trial, {longest_h:.1f} h, is the wall time with one GPU per trial)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
