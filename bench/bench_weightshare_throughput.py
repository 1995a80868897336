"""Samples/s of the weight-sharing trainable (research/weightshare) per network and sharing variant.

Builds ``WeightShareTrainable`` as a trial does and times its ``train_epoch()`` (one shuffled pass, SGD
steps; CUDA-synchronized) and ``evaluate()``, without Ray around them. The small networks train on the
1,437 digits (1 x 16 x 16); the CIFAR networks (resnet18, resnet50, xception; ``--cifar``) on random
CIFAR-shaped tensors (3 x 32 x 32, ``--cifar-samples``), with the crop-and-flip augmentation: their
throughput does not depend on the pixels, and the CIFAR files need not be here. One warm-up epoch per
case is not counted; repeats are interleaved across the cases; figures are medians (min-max).

    .venv/bin/python bench/bench_weightshare_throughput.py --threads 1
    python3 bench/bench_weightshare_throughput.py --device cuda --cifar     # on a GPU machine
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

SMALL = (
    "resnet_small/none/1",
    "resnet_small/thin/4",
    "resnet_small/repeat/4",
    "separable_small/none/1",
    "separable_small/depthwise/4",
    "separable_small/pointwise/4",
)
CIFAR = ("resnet18/none/1", "resnet18/repeat/4", "resnet50/none/1", "xception/none/1", "xception/depthwise/4")


def build(variant: str, device: str, cifar_samples: int) -> Any:
    from weightshare.data import Dataset
    from weightshare.layers import unique_parameter_count
    from weightshare.networks import build_network
    from weightshare.sharing import Sharing
    from weightshare.trainable import WeightShareTrainable

    trial = WeightShareTrainable(config={"variant": variant, "device": device, "epochs": 1000, "batch_size": 128})
    if variant.split("/")[0] in ("resnet18", "resnet50", "xception"):  # CIFAR-shaped: swap in random data
        generator = torch.Generator().manual_seed(0)
        n_test = max(10, cifar_samples // 5)
        x = torch.randn(cifar_samples + n_test, 3, 32, 32, generator=generator).to(trial.device)
        y = torch.randint(0, 10, (cifar_samples + n_test,), generator=generator).to(trial.device)
        trial.data = Dataset(x[:cifar_samples], y[:cifar_samples], x[cifar_samples:], y[cifar_samples:])
        cfg = trial.cfg
        sharing = Sharing(cfg.sharing, cfg.factor, cfg.repeat_shortcut)
        trial.model = build_network(cfg.network, sharing, 3, 10).to(trial.device)
        trial.optimizer = torch.optim.SGD(trial.model.parameters(), lr=0.01, momentum=0.9)
        trial.unique_params = unique_parameter_count(trial.model)
        trial.cfg = cfg.model_copy(update={"augment": True})
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cifar", action="store_true", help="also the CIFAR networks (slow on a CPU)")
    parser.add_argument("--cifar-samples", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_weightshare_throughput: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    from ray.tune.trainable import trainable as ray_trainable

    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="bench_weightshare_")
    torch.set_num_threads(args.threads)
    variants = SMALL + (CIFAR if args.cifar else ())
    built = {v: build(v, args.device, args.cifar_samples) for v in variants}
    rates: dict[str, dict[str, list[float]]] = {v: {"train": [], "evaluate": []} for v in variants}
    for trial in built.values():  # warm-up
        trial.train_epoch()
        trial.evaluate()
    for _ in range(args.repeats):
        for variant, trial in built.items():
            rates[variant]["train"].append(len(trial.data.y_train) / timed(trial.train_epoch, args.device))
            rates[variant]["evaluate"].append(len(trial.data.y_test) / timed(trial.evaluate, args.device))
    print(
        f"# weightshare throughput: {device_name(args.device)} ({args.device}), torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), {args.repeats} interleaved repeats, medians (min-max), batch 128"
    )
    print(f"{'variant':<30} {'unique params':>13} {'train samples/s':>24} {'evaluate samples/s':>26}")
    for variant, trial in built.items():
        cells = []
        for phase in ("train", "evaluate"):
            v = rates[variant][phase]
            cells.append(f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})")
        print(f"{variant:<30} {trial.unique_params:>13,} {cells[0]:>24} {cells[1]:>26}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
