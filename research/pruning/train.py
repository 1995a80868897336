"""Prune and quantize a small CNN: dense training, global magnitude pruning to --sparsity with fine-tuning
(one-shot or iterative), then post-training 8/4-bit weight quantization (per tensor and per channel).

    python pruning/train.py --dataset digits --sparsity 0.9 --schedule iterative --seed 0

One JSON line of metrics per epoch on stdout (epoch, train_loss, test_accuracy, nonzero_params, sparsity,
weight_bits, epoch_time_s, samples_per_s, ...); the last epoch's line adds the accuracy and the bits of each
quantized model (test_accuracy_int8_tensor, weight_bits_int4_channel, ...). The whole state (weights, masks,
optimizer, RNG, epoch, the schedule's round) is saved to $ORCH_CHECKPOINT_DIR (or --checkpoint-dir) after
every epoch, before its metrics line, and a run started with a checkpoint there resumes from it: on CPU
with the same --threads, a resumed run ends bitwise identical to one that was never stopped. SIGUSR1
(orch's "checkpoint now") is acknowledged: the state is on disk as of the last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the workspace root: `pruning` is a package

from pruning.networks import NETWORKS, build_network  # noqa: E402
from pruning.prune import SCHEDULES, apply_masks, count_nonzero, global_magnitude_prune, mask_gradients, pruning_plan, sparsity_of  # noqa: E402
from pruning.quantize import GRANULARITIES, quantize_model, quantized_bits  # noqa: E402

DATASETS = ("digits", "mnist", "cifar10")
STATE_FILE = "state.pt"
CHECKPOINT_FORMAT = 1
# Arguments that may differ between a run and its resumption (where the data is, where it runs).
_RESUMABLE_CHANGES = {"checkpoint_dir", "data_root", "device"}
_DATA_ERRORS = {"IDXFormatError", "CIFARFormatError"}  # the data readers' one-line errors
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see --help)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="digits")
    data.add_argument("--data-root", default=None, help="orch data fetch --root DIR (or its mnist/, cifar-10-batches-py/)")
    data.add_argument("--train-subset", type=int, default=0, help="first N training examples only (0 = all)")
    data.add_argument("--test-subset", type=int, default=0, help="first N test examples only (0 = all)")
    data.add_argument("--augment", choices=("auto", "none", "crop-flip"), default="auto", help="auto: crop-flip on cifar10")
    model = parser.add_argument_group("network")
    model.add_argument("--network", choices=NETWORKS, default="resnet")
    model.add_argument("--blocks", type=int, default=1, help="ResNet basic blocks per stage (3 = ResNet-20)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    train.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (cosine-annealed over the dense epochs)")
    train.add_argument("--finetune-lr", type=float, default=0.01, help="constant SGD learning rate while fine-tuning")
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (bitwise resume needs the same count)")
    train.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the network on the GPU (data and augmentation stay on the CPU)",
    )
    prune = parser.add_argument_group("pruning and quantization")
    prune.add_argument("--sparsity", type=float, default=0.0, help="fraction of conv/linear weights zeroed, in [0, 1)")
    prune.add_argument("--schedule", choices=SCHEDULES, default="oneshot")
    prune.add_argument("--prune-rounds", type=int, default=3, help="iterative: prunings spread over the fine-tuning")
    prune.add_argument("--finetune-epochs", type=int, default=5, help="epochs after the first pruning")
    prune.add_argument("--quant-bits", default="8,4", help="comma-separated bit widths quantized after training ('' = none)")
    parser.add_argument("--checkpoint-dir", default=None, help="default: $ORCH_CHECKPOINT_DIR (none: no checkpoints)")
    args = parser.parse_args(argv)
    _check(args)
    return args


def _check(args: argparse.Namespace) -> None:
    if not 0.0 <= args.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    for name in ("epochs", "finetune_epochs", "train_subset", "test_subset"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("batch_size", "threads", "blocks", "prune_rounds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.epochs + args.finetune_epochs < 1:
        raise UsageError("--epochs + --finetune-epochs must be at least 1")
    if not (args.lr > 0 and args.finetune_lr > 0):
        raise UsageError("--lr and --finetune-lr must be > 0")
    try:
        args.bits = [int(b) for b in args.quant_bits.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--quant-bits must be comma-separated integers, got {args.quant_bits!r}") from None
    if any(not 2 <= b <= 16 for b in args.bits):
        raise UsageError(f"--quant-bits must each be in 2..16, got {args.quant_bits!r}")
    try:
        args.plan = pruning_plan(args.sparsity, args.schedule, args.prune_rounds, args.finetune_epochs)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.dataset in ("mnist", "cifar10") and not args.data_root:
        raise UsageError(f"--dataset {args.dataset} needs --data-root")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible here (CUDA_VISIBLE_DEVICES, or torch built for CPU only)")
    args.checkpoint_dir = args.checkpoint_dir or os.environ.get("ORCH_CHECKPOINT_DIR") or None


# --------------------------------------------------------------------------- data
@dataclass
class Data:
    x_train: torch.Tensor  # float (N, C, H, W), normalised
    y_train: torch.Tensor  # int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    augment: bool


def load_data(args: argparse.Namespace) -> Data:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if args.dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()  # 8x8, values 0..16; the stratified 80/20 split with seed 0 (1,437 / 360)
        x_tr, x_te, y_tr, y_te = train_test_split(
            digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
        )
        images = {"train": (x_tr / 16.0, y_tr), "test": (x_te / 16.0, y_te)}
        n_classes, mean, std = 10, (0.0,), (1.0,)
    elif args.dataset == "mnist":
        mnist = _shared_reader("mnist")
        if (Path(args.data_root) / "mnist").is_dir():  # the data root of `orch data fetch mnist`, or its mnist/ folder
            args = argparse.Namespace(**{**vars(args), "data_root": str(Path(args.data_root) / "mnist")})
        images = {
            split: (x / 255.0, y) for split in ("train", "test") for x, y in [mnist.load_mnist_arrays(args.data_root, split)]
        }
        n_classes, mean, std = 10, (0.1307,), (0.3081,)
    else:
        cifar = _shared_reader("cifar")
        images = {}
        for split in ("train", "test"):
            x, y = cifar.load_cifar_arrays(args.data_root, "cifar10", split)
            images[split] = (x.transpose(0, 3, 1, 2) / 255.0, y)  # HWC -> CHW
        n_classes, mean, std = 10, _CIFAR_MEAN, _CIFAR_STD

    def tensors(split: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = images[split]
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if x.dim() == 3:
            x = x.unsqueeze(1)
        shift, scale = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        x, y = (x - shift) / scale, torch.as_tensor(np.asarray(y, dtype=np.int64))
        return (x[:limit], y[:limit]) if limit else (x, y)

    x_train, y_train = tensors("train", args.train_subset)
    x_test, y_test = tensors("test", args.test_subset)
    augment = args.augment == "crop-flip" or (args.augment == "auto" and args.dataset == "cifar10")
    return Data(x_train.contiguous(), y_train, x_test.contiguous(), y_test, n_classes, augment)


def _shared_reader(name: str) -> Any:
    """orch's data reader (trainables.data.mnist / .cifar): the one thing taken from orch."""
    import importlib

    try:
        return importlib.import_module(f"trainables.data.{name}")
    except ImportError as error:
        raise UsageError(f"cannot import orch's data reader trainables.data.{name} ({error}); put orch on PYTHONPATH") from None


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation: random crop from the zero-padded image, random horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = dx.view(n, 1) + torch.arange(w)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols).view(n, 1, 1, w)
    index = torch.arange(n).view(n, 1, 1, 1)
    channel = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[index, channel, rows, cols]


# --------------------------------------------------------------------------- training
@dataclass
class State:
    model: nn.Module
    optimizer: torch.optim.SGD
    generator: torch.Generator
    masks: dict[str, torch.Tensor]
    epoch: int = 0  # epochs finished
    last_metrics: dict[str, Any] | None = None


def new_state(args: argparse.Namespace, data: Data) -> State:
    torch.manual_seed(args.seed)
    model = build_network(args.network, data.x_train.shape[1], data.n_classes, args.blocks).to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    return State(model, optimizer, generator, {})


def learning_rate(args: argparse.Namespace, epoch: int) -> float:
    """Cosine from --lr over the dense epochs (epoch is 1-based), then --finetune-lr."""
    if epoch <= args.epochs:
        return 0.5 * args.lr * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))
    return args.finetune_lr


def train_epoch(state: State, data: Data, args: argparse.Namespace) -> tuple[float, float]:
    """One pass over the training set; (mean loss, seconds)."""
    started = time.perf_counter()
    state.model.train()
    order = torch.randperm(len(data.y_train), generator=state.generator)
    x_all = crop_flip(data.x_train, state.generator) if data.augment else data.x_train
    total, count = 0.0, 0
    for start in range(0, len(order), args.batch_size):
        index = order[start : start + args.batch_size]
        x, y = x_all[index].to(args.device, non_blocking=True), data.y_train[index].to(args.device, non_blocking=True)
        state.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(state.model(x), y)
        loss.backward()
        if state.masks:
            mask_gradients(state.model, state.masks)
        state.optimizer.step()
        if state.masks:
            apply_masks(state.model, state.masks)
        total += float(loss.detach()) * len(index)
        count += len(index)
    return total / count, time.perf_counter() - started


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[start : start + batch_size]).sum())
    return correct / len(y)


def size_metrics(model: nn.Module) -> dict[str, Any]:
    prunable, other = count_nonzero(model)
    return {
        "nonzero_params": prunable + other,
        "nonzero_weights": prunable,
        "sparsity": sparsity_of(model),
        "weight_bits": 32 * (prunable + other),
    }


def quantized_metrics(model: nn.Module, data: Data, bits: list[int]) -> dict[str, Any]:
    prunable, other = count_nonzero(model)
    metrics: dict[str, Any] = {}
    for b in bits:
        for granularity in GRANULARITIES:
            quantized, n_scales = quantize_model(model, b, granularity)
            metrics[f"test_accuracy_int{b}_{granularity}"] = accuracy(quantized, data.x_test, data.y_test)
            metrics[f"weight_bits_int{b}_{granularity}"] = quantized_bits(prunable, other, b, n_scales)
    return metrics


# --------------------------------------------------------------------------- checkpoints
def _recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("plan", "bits")}


def save_state(folder: str, state: State, args: argparse.Namespace) -> None:
    """Everything resuming needs, written atomically (orch copies the folder when the next metrics line comes)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "args": _recorded_args(args),
        "epoch": state.epoch,
        "phase": phase_of(args, state.epoch),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "masks": state.masks,
        "generator": state.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "last_metrics": state.last_metrics,
    }
    path = Path(folder) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE_FILE}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_state(folder: str, state: State, args: argparse.Namespace) -> bool:
    """Restore `state` from the folder's checkpoint; False when there is none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: one line, not torch's traceback
        raise UsageError(
            f"{path}: unreadable checkpoint ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path}: not a checkpoint of this train.py (format {CHECKPOINT_FORMAT})")
    recorded, current = payload["args"], _recorded_args(args)
    changed = sorted(k for k in current if k not in _RESUMABLE_CHANGES and recorded.get(k) != current[k])
    if changed:
        first = changed[0]
        raise UsageError(
            f"{path}: saved with other arguments ({', '.join(changed)}; e.g. {first}={recorded.get(first)!r}, now {current[first]!r}); "
            "resume with the same ones or use another checkpoint folder"
        )
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.masks = {name: mask.to(args.device) for name, mask in payload["masks"].items()}
    state.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    state.epoch, state.last_metrics = payload["epoch"], payload["last_metrics"]
    return True


def phase_of(args: argparse.Namespace, epoch: int) -> str:
    """'dense' or 'finetune' for a finished epoch count (0 = nothing done yet)."""
    return "dense" if epoch <= args.epochs else "finetune"


# --------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.device == "cpu":  # bitwise reproducible; on CUDA this would need CUBLAS_WORKSPACE_CONFIG and slower kernels
        torch.use_deterministic_algorithms(True)
    data = load_data(args)
    state = new_state(args, data)
    total_epochs = args.epochs + args.finetune_epochs
    resumed = bool(args.checkpoint_dir) and load_state(args.checkpoint_dir, state, args)
    print(
        f"train.py: {'resuming after' if resumed else 'starting at'} epoch {state.epoch if resumed else 1} of {total_epochs}",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(
        signal.SIGUSR1,
        lambda *_: print("train.py: SIGUSR1: the last finished epoch is checkpointed", file=sys.stderr, flush=True),
    )
    if state.epoch >= total_epochs and state.last_metrics is not None:  # finished before: say its result again
        print(json.dumps(state.last_metrics), flush=True)
        return
    for epoch in range(state.epoch + 1, total_epochs + 1):
        finetune_index = epoch - args.epochs - 1  # 0-based index among the fine-tuning epochs, negative while dense
        if finetune_index in args.plan:
            state.masks = global_magnitude_prune(state.model, args.plan[finetune_index], state.masks)
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(args, epoch)
        train_loss, seconds = train_epoch(state, data, args)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "test_accuracy": accuracy(state.model, data.x_test, data.y_test),
            **size_metrics(state.model),
            "prune_round": sum(1 for index in args.plan if index <= finetune_index),
            "lr": learning_rate(args, epoch),
            "epoch_time_s": round(seconds, 4),
            "samples_per_s": round(len(data.y_train) / seconds, 1),
        }
        if epoch == total_epochs and args.bits:
            metrics.update(quantized_metrics(state.model, data, args.bits))
        state.epoch, state.last_metrics = epoch, metrics
        if args.checkpoint_dir:
            save_state(args.checkpoint_dir, state, args)  # before the line: orch files it as this result's checkpoint
        print(json.dumps(metrics), flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        run(args)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        if isinstance(error, ValueError) and type(error).__name__ not in _DATA_ERRORS:
            raise  # a bug, not bad input: keep its traceback
        print(f"train.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
