"""Benchmark of the AVAE inner optimisation on CPU (not a timed test).

Compares, on the 360 test digits with 16 candidates (identity + 15 angles):

  loop       one forward pass per candidate over all images (``batched=False``)
  batched    all candidates of all images in batched passes (what the trainable uses)
  per-image  the original's test-time procedure: one image at a time, batch size 1,
             one forward per candidate (his ``optimize_rotation``); timed on a few
             images and scaled to 360
  bf16       ``batched`` ranking under bf16 autocast + float32 re-scoring of the winner and
             the identity (config ``screen_precision: bfloat16``; default float32)

then the whole search (candidates + 10 Adam steps) batched vs per-image, and samples/s of
training (``upright``, ``train_opt``) and of evaluation through ``AVAETrainable``.
Methods are interleaved within each repeat, so every ratio compares timings taken in the
same run under the same load; the figures are medians over the repeats.

    .venv/bin/python bench/bench_avae_inner_loop.py --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from device_timing import device_name, timed  # noqa: E402

from trainables.avae.loss import DEFAULT_OBJECTIVE  # noqa: E402
from trainables.avae.model import ConvVAE  # noqa: E402
from trainables.avae.transforms import (  # noqa: E402
    _best_candidates,
    _best_candidates_loop,
    _screen,
    candidate_params,
    frozen,
    optimise_transform,
)
from trainables.data.digits import load_digits_split  # noqa: E402

DEVICE = "cpu"  # --device; every timing on CUDA ends with a synchronize


def _timed(fn) -> float:
    return timed(fn, DEVICE)


def bench_candidates(model, x, k, transform, repeats, per_image_n):
    candidates = candidate_params(transform, k, torch.Generator().manual_seed(0), x.device)
    sub = x[:per_image_n]
    scale = x.shape[0] / per_image_n

    def loop():
        _best_candidates_loop(model, x, candidates, transform)

    def batched():
        _best_candidates(model, x, candidates, transform)

    def per_image():
        for i in range(sub.shape[0]):
            _best_candidates_loop(model, sub[i : i + 1], candidates, transform)

    def bf16():  # bf16 ranking + float32 re-scoring of winner and identity
        _screen(_best_candidates, model, x, candidates, transform, DEFAULT_OBJECTIVE, "bfloat16")

    methods = {"loop": loop, "batched": batched, "per-image": per_image, "bf16": bf16}
    times = {name: [] for name in methods}
    with frozen(model), torch.inference_mode():
        batched()  # warm-up
        for _ in range(repeats):
            for name, fn in methods.items():
                t = _timed(fn)
                times[name].append(t * scale if name == "per-image" else t)
    return times


def bench_full_search(model, x, k, steps, repeats, per_image_n):
    sub = x[:per_image_n]
    scale = x.shape[0] / per_image_n

    def batched():
        optimise_transform(model, x, "rotation", k, steps, 0.05, torch.Generator().manual_seed(0))

    def per_image():
        g = torch.Generator().manual_seed(0)
        for i in range(sub.shape[0]):
            optimise_transform(model, sub[i : i + 1], "rotation", k, steps, 0.05, g, batched=False)

    def batched_bf16():
        optimise_transform(model, x, "rotation", k, steps, 0.05, torch.Generator().manual_seed(0), screen_precision="bfloat16")

    times = {"batched": [], "batched bf16": [], "per-image": []}
    for _ in range(repeats):
        times["batched"].append(_timed(batched))
        times["batched bf16"].append(_timed(batched_bf16))
        times["per-image"].append(_timed(per_image) * scale)
    return times


def bench_trainable(repeats, train_subset, test_subset):
    from ray.tune.trainable import trainable as ray_trainable

    ray_trainable.DEFAULT_STORAGE_PATH = tempfile.mkdtemp(prefix="bench_avae_")
    from trainables.avae.trainable import AVAETrainable

    rotations = [0, 60, 120, 180]
    trainables = {
        mode: AVAETrainable(
            config={
                "train_mode": mode,
                "train_subset": train_subset,
                "test_subset": test_subset,
                "eval_rotations_deg": rotations,
                "epochs": 100,
                "device": DEVICE,
            }
        )
        for mode in ("upright", "train_opt")
    }
    n_train = trainables["upright"].x_train.shape[0]
    n_test = trainables["upright"].x_test.shape[0]
    # evaluate(): each rotation, the orientation search, val_loss_affine
    n_eval = n_test * (len(rotations) + 2)
    rates = {"train upright": [], "train train_opt": [], "evaluate (search)": []}
    for _ in range(repeats):
        for mode, t in trainables.items():
            rates[f"train {mode}"].append(n_train / _timed(t.train_epoch))
        rates["evaluate (search)"].append(n_eval / _timed(trainables["train_opt"].evaluate))
    return rates, n_train, n_eval


def _fmt(values):
    return f"{statistics.median(values):8.3f} s  (min {min(values):.3f}, max {max(values):.3f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-image-n", type=int, default=24, help="images timed per-image")
    parser.add_argument("--steps", type=int, default=10, help="Adam steps of the full search")
    parser.add_argument("--skip-trainable", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = load_digits_split().x_test.to(DEVICE)
    model = ConvVAE(6).to(DEVICE)
    k = args.candidates
    print(
        f"# AVAE inner optimisation benchmark: {device_name(DEVICE)} ({DEVICE}), torch {torch.__version__}, "
        f"{args.threads} thread(s), {x.shape[0]} test digits x {k} candidates, "
        f"{args.repeats} interleaved repeats, medians"
    )

    for transform in ("rotation", "affine"):
        times = bench_candidates(model, x, k, transform, args.repeats, args.per_image_n)
        base_loop, base_img = statistics.median(times["loop"]), statistics.median(times["per-image"])
        print(f"\n## candidate evaluation ({transform}), {x.shape[0] * k} image-candidates")
        print(f"{'method':<10} {'median time':<40} {'vs loop':>8} {'vs per-image':>13} {'cand/s':>9}")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:<10} {_fmt(values):<40} {base_loop / med:7.2f}x {base_img / med:12.2f}x {x.shape[0] * k / med:9.0f}")
        if transform == "rotation":
            per_rep = [lo / b for lo, b in zip(times["loop"], times["batched"])]
            print(f"batched speed-up over loop per repeat: {', '.join(f'{r:.2f}' for r in per_rep)}")

    times = bench_full_search(model, x, k, args.steps, args.repeats, max(4, args.per_image_n // 2))
    med_b, med_i = statistics.median(times["batched"]), statistics.median(times["per-image"])
    print(f"\n## whole search (rotation, {k} candidates + {args.steps} Adam steps), 360 digits")
    print(f"batched    {_fmt(times['batched'])}  {360 / med_b:7.0f} img/s")
    med_h = statistics.median(times["batched bf16"])
    print(f"bf16 rank  {_fmt(times['batched bf16'])}  {360 / med_h:7.0f} img/s   {med_b / med_h:.2f}x vs batched float32")
    print(f"per-image  {_fmt(times['per-image'])}  {360 / med_i:7.0f} img/s   batched is {med_i / med_b:.1f}x faster")

    if not args.skip_trainable:
        rates, n_train, n_eval = bench_trainable(max(2, args.repeats // 2), 320, 120)
        print(
            f"\n## AVAETrainable samples/s ({n_train} training digits per epoch; evaluation: "
            f"{n_eval} image searches = 120 digits x (4 rotations + orientation + affine))"
        )
        for name, values in rates.items():
            print(f"{name:<20} {statistics.median(values):8.0f} samples/s  (min {min(values):.0f}, max {max(values):.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
