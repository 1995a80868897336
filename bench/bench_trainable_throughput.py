"""Samples/s of each research trainable's training epoch and evaluation, on a chosen device.

Builds each trainable the way a trial does (its own config model, ``device`` key) and times
``train_epoch()`` and ``evaluate()`` directly, without Ray's scheduler around them. On CUDA every
timing ends with ``torch.cuda.synchronize()``. Repeats are interleaved across the trainables; the
figures are medians (min-max). One warm-up epoch and evaluation per trainable are not counted.

    .venv/bin/python bench/bench_trainable_throughput.py --device cpu --threads 1
    python3 bench/bench_trainable_throughput.py --device cuda          # on a GPU machine

``--json FILE`` also writes the figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from device_timing import device_name, timed  # noqa: E402

# name -> (trainable class path, config): sizes a CPU thread finishes in seconds; --scale multiplies
# the data sizes for a GPU, where these are too small to fill the device.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "avae upright": (
        "trainables.avae.trainable:AVAETrainable",
        {"train_mode": "upright", "eval_rotations_deg": [0, 60, 120, 180]},
    ),
    "avae train_opt": (
        "trainables.avae.trainable:AVAETrainable",
        {"train_mode": "train_opt", "eval_rotations_deg": [0, 60, 120, 180]},
    ),
    "avae3d": ("trainables.avae3d.trainable:AVAE3DTrainable", {"synthetic_train_per_class": 16, "synthetic_test_per_class": 4}),
    "avae3d bf16": (
        "trainables.avae3d.trainable:AVAE3DTrainable",
        {"synthetic_train_per_class": 16, "synthetic_test_per_class": 4, "amp": "bf16"},
    ),
    "hvae": ("trainables.hvae.trainable:HVAETrainable", {"n_train": 512, "n_val": 128}),
}
SCALED_KEYS = ("synthetic_train_per_class", "synthetic_test_per_class", "n_train", "n_val")


def _load(path: str):
    module, name = path.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _samples(trainable) -> tuple[int, int]:
    """Samples of one training epoch, and of one evaluation (as the trainable counts them)."""
    n_train = int(trainable.x_train.shape[0]) if hasattr(trainable, "x_train") else 0
    x_eval = next((getattr(trainable, n) for n in ("x_test", "x_val") if hasattr(trainable, n)), None)
    n_eval = int(x_eval.shape[0]) if x_eval is not None else 0
    return n_train, n_eval


def build(cases: list[str], device: str, scale: int) -> dict[str, Any]:
    from ray.tune.trainable import trainable as ray_trainable

    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="bench_throughput_")
    built = {}
    for name in cases:
        path, config = CASES[name]
        config = {**config, "device": device, "epochs": 1000}
        for key in SCALED_KEYS:
            if key in config:
                config[key] = config[key] * scale
        built[name] = _load(path)(config=config)
    return built


def measure(built: dict[str, Any], device: str, repeats: int) -> dict[str, dict[str, list[float]]]:
    rates: dict[str, dict[str, list[float]]] = {name: {"train": [], "evaluate": []} for name in built}
    for trainable in built.values():  # warm-up: kernels, allocator, autotuning
        trainable.train_epoch()
        trainable.evaluate()
    for _ in range(repeats):
        for name, trainable in built.items():
            n_train, n_eval = _samples(trainable)
            rates[name]["train"].append(n_train / timed(trainable.train_epoch, device))
            rates[name]["evaluate"].append(n_eval / timed(trainable.evaluate, device))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, default=1, help="multiply the avae3d/hvae data sizes")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated of: {', '.join(CASES)}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"bench_trainable_throughput: unknown case(s) {unknown}; choose from {list(CASES)}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_trainable_throughput: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    if args.device == "cpu":
        cases = [c for c in cases if not c.endswith("bf16")]  # bf16 autocast is CUDA-only
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    built = build(cases, args.device, args.scale)
    rates = measure(built, args.device, args.repeats)
    name = device_name(args.device)
    print(
        f"# trainable throughput: {name} ({args.device}), torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}, "
        f"{args.repeats} interleaved repeats, medians (min-max), data scale x{args.scale}"
    )
    print(f"{'trainable':<16} {'train samples/s':>28} {'evaluate samples/s':>28}  (train / eval samples)")
    rows = []
    for name, trainable in built.items():
        n_train, n_eval = _samples(trainable)
        cells = []
        for phase in ("train", "evaluate"):
            v = rates[name][phase]
            cells.append(f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})")
        print(f"{name:<16} {cells[0]:>28} {cells[1]:>28}  ({n_train} / {n_eval}) on {trainable.device}")
        rows.append({"trainable": name, "device": str(trainable.device), "n_train": n_train, "n_eval": n_eval, **rates[name]})
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
