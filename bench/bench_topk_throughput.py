"""Samples/s of the top-k trainable (research/topk) per activation variant: training, and a 10-step PGD attack.

Builds ``TopKTrainable`` as a trial does (without its ReLU twin) and times ``train_epoch()`` on the model
(one shuffled pass, SGD steps; CUDA-synchronized) and a PGD-10 evaluation of ``--attack-samples`` test images
(10 forward+backward passes per image), without Ray around them. ``small_cnn`` (width 16, the digits sweep's)
trains on the 1,437 digits (1 x 16 x 16); with ``--cifar``, PreAct-ResNet18 (width 64) on random
CIFAR-shaped images (3 x 32 x 32, ``--cifar-samples``) with the crop-and-flip augmentation: throughput does
not depend on the pixels and the CIFAR files need not be here. One warm-up per case is not counted; repeats
are interleaved across the cases; figures are medians (min-max).

    nice -n 19 .venv/bin/python bench/bench_topk_throughput.py --threads 1
    python3 bench/bench_topk_throughput.py --device cuda --cifar     # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "research", Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from device_timing import device_name, timed  # noqa: E402

VARIANTS = ("relu", "topk/0.05", "topk/0.1", "topk/0.25", "topk_global/0.1", "topk/0.1/every_relu", "topk/0.1+boost")


def build(variant: str, device: str, cifar: bool, cifar_samples: int) -> Any:
    from topk.data import Dataset
    from topk.trainable import TopKTrainable

    name, _, boost = variant.partition("+")
    config: dict[str, Any] = {"variant": name, "device": device, "epochs": 1000, "transfer": False}
    config["boost_strength"] = 1.0 if boost else 0.0
    if cifar:
        config.update(network="preact_resnet18", width=64, batch_size=128, augment=True)
    else:
        config.update(width=16, batch_size=64)
    trial = TopKTrainable(config=config)
    if cifar:
        generator = torch.Generator().manual_seed(0)
        n_test = 256
        x = torch.rand(cifar_samples + n_test, 3, 32, 32, generator=generator).to(trial.device)
        y = torch.randint(0, 10, (cifar_samples + n_test,), generator=generator).to(trial.device)
        mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
        trial.data = Dataset(x[:cifar_samples], y[:cifar_samples], x[cifar_samples:], y[cifar_samples:], mean, std)
        trial.learner = trial._learner(trial.activation)
    return trial


def attack(trial: Any, n: int) -> None:
    from topk.attacks import adversarial_accuracy, pgd

    x, y = trial.data.x_test[:n], trial.data.y_test[:n]
    white = partial(pgd, steps=10, step_size=0.025, generator=torch.Generator().manual_seed(0))
    adversarial_accuracy(trial.model, x, y, lambda xb, yb: white(trial.model, xb, yb, 0.1), trial.cfg.eval_batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--attack-samples", type=int, default=100)
    parser.add_argument("--cifar", action="store_true", help="PreAct-ResNet18 on CIFAR-shaped data (slow on a CPU)")
    parser.add_argument("--cifar-samples", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_topk_throughput: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    from ray.tune.trainable import trainable as ray_trainable

    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="bench_topk_")
    torch.set_num_threads(args.threads)
    built = {v: build(v, args.device, args.cifar, args.cifar_samples) for v in args.variants}
    rates: dict[str, dict[str, list[float]]] = {v: {"train": [], "pgd": []} for v in built}
    for trial in built.values():  # warm-up
        trial.train_epoch(trial.learner)
        attack(trial, min(10, args.attack_samples))
    for _ in range(args.repeats):
        for variant, trial in built.items():
            n_train = len(trial.data.y_train)
            rates[variant]["train"].append(n_train / timed(partial(trial.train_epoch, trial.learner), args.device))
            n_attack = min(args.attack_samples, len(trial.data.y_test))
            rates[variant]["pgd"].append(n_attack / timed(partial(attack, trial, n_attack), args.device))
    network = "preact_resnet18 w64, batch 128" if args.cifar else "small_cnn w16, batch 64"
    print(
        f"# topk throughput: {device_name(args.device)} ({args.device}), torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), {network}, {args.repeats} interleaved repeats, medians (min-max)"
    )
    print(f"{'variant':<24} {'train samples/s':>24} {'PGD-10 samples/s':>24}")
    for variant in built:
        cells = [
            f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})" for v in (rates[variant]["train"], rates[variant]["pgd"])
        ]
        print(f"{variant:<24} {cells[0]:>24} {cells[1]:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
