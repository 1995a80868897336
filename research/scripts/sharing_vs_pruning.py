"""Accuracy against parameters of a weight-sharing sweep and a pruning sweep, on one plot (issue 17).

Reads the trial runs of two orch sweeps from MLflow (plain MLflow client: nothing of orch is imported),
groups them over seeds, and draws mean +- std of the final test accuracy against
  * weight sharing: unique parameters (tiling does not count twice), one curve per network x sharing kind;
  * pruning: non-zero parameters after pruning, one curve per schedule (one-shot, iterative).

    python research/scripts/sharing_vs_pruning.py --sharing <weightshare sweep id> --pruning <pruning sweep id> \
        [--tracking-uri URI] [--pruning-tracking-uri URI] [--network resnet_small] --out sharing_vs_pruning.png

It also prints the points as a Markdown table. Both sweeps may live in one tracking store (default:
MLFLOW_TRACKING_URI, else sqlite:///.orch/mlflow.db, where `orch run` writes) or in two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from mlflow.tracking import MlflowClient


def _trials(uri: str, sweep_id: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.`orch.sweep_id` = '{sweep_id}' and tags.`orch.kind` = 'trial'", max_results=5000
    )
    if not runs:
        sys.exit(
            f"error: no trial runs of sweep {sweep_id} in {uri}; fix: pass the sweep id `orch run` printed and its --tracking-uri"
        )
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def sharing_curves(runs: list, network: str) -> dict[str, list[tuple[float, float, float, int]]]:
    """{'<network> <sharing>': [(unique params, mean acc, std acc, seeds)]}, the baseline in every curve."""
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        variant = run.data.params.get("variant", "")
        if variant.startswith(network + "/") and "test_accuracy" in run.data.metrics:
            groups[variant].append(run)
    curves: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    baseline = None
    for variant, members in groups.items():
        _, sharing, _factor = variant.split("/")
        accuracy = [100 * r.data.metrics["test_accuracy"] for r in members]
        point = (members[0].data.metrics["unique_params"], *_mean_std(accuracy), len(members))
        if sharing in ("none", "baseline"):
            baseline = point
        else:
            curves[f"{network} {sharing}"].append(point)
    for points in curves.values():
        if baseline is not None:
            points.append(baseline)
        points.sort()
    return dict(curves)


def pruning_curves(runs: list) -> dict[str, list[tuple[float, float, float, int]]]:
    """{'pruning <schedule>': [(non-zero params, mean acc, std acc, seeds)]} over the sparsities."""
    groups: dict[tuple[str, float], list] = defaultdict(list)
    for run in runs:
        if "test_accuracy" in run.data.metrics:
            groups[(run.data.params["schedule"], float(run.data.params["sparsity"]))].append(run)
    dense = [r for (_, sparsity), members in groups.items() if sparsity == 0.0 for r in members]
    curves: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    for (schedule, sparsity), members in groups.items():
        if sparsity == 0.0:
            continue
        accuracy = [100 * r.data.metrics["test_accuracy"] for r in members]
        nonzero = statistics.fmean(r.data.metrics["nonzero_params"] for r in members)
        curves[f"pruning {schedule}"].append((nonzero, *_mean_std(accuracy), len(members)))
    if dense:
        accuracy = [100 * r.data.metrics["test_accuracy"] for r in dense]
        point = (statistics.fmean(r.data.metrics["nonzero_params"] for r in dense), *_mean_std(accuracy), len(dense))
        for points in curves.values():
            points.append(point)
    for points in curves.values():
        points.sort()
    return dict(curves)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sharing", required=True, help="sweep id of a weightshare sweep")
    parser.add_argument("--pruning", required=True, help="sweep id of a pruning sweep")
    default_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.orch/mlflow.db")
    parser.add_argument("--tracking-uri", default=default_uri, help="MLflow store of the sharing sweep (and of both)")
    parser.add_argument("--pruning-tracking-uri", default=None, help="MLflow store of the pruning sweep, if another")
    parser.add_argument("--network", default="resnet_small", help="the weightshare network to compare (same as pruning's)")
    parser.add_argument("--out", type=Path, default=Path("sharing_vs_pruning.png"))
    args = parser.parse_args(argv)

    curves = sharing_curves(_trials(args.tracking_uri, args.sharing), args.network)
    curves.update(pruning_curves(_trials(args.pruning_tracking_uri or args.tracking_uri, args.pruning)))
    if not curves:
        sys.exit(f"error: no {args.network} variants or pruning sparsities with test_accuracy in these sweeps")

    print("| curve | parameters | test accuracy % (mean ± std) | seeds |\n|---|---|---|---|")
    for name, points in sorted(curves.items()):
        for params, mean, std, n in points:
            print(f"| {name} | {params:,.0f} | {mean:.2f} ± {std:.2f} | {n} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(curves.items()):
        xs, means, stds, _ = zip(*points, strict=True)
        style = "--" if name.startswith("pruning") else "-"
        axes.errorbar(xs, means, yerr=stds, fmt=f"o{style}", capsize=3, label=name)
    axes.set_xscale("log")
    axes.set_xlabel("unique parameters (sharing) / non-zero parameters (pruning)")
    axes.set_ylabel("final test accuracy (%)")
    axes.set_title(f"{args.network}: weight sharing against pruning (mean ± std over seeds)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
