"""`orch compare SWEEP --group-by`: a sweep's trials summarised over seeds (or any hyperparameters left out).

Trials are grouped by the hyperparameters named (default: every one that varies in the sweep except `seed`);
per group: the count of trials with a value, the mean and the sample standard deviation (n - 1; "-" for one
trial) of the sweep's metric and of any metrics asked for. The same table goes to the sweep's parent run as
`summary/groups.csv` and `summary/groups.md`, with `summary/groups_<metric>.png` (mean per group, error bars
one standard deviation).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.kernel.errors import OrchError
from orchestrator.laptop.compare import SweepComparison

SEED_KEY = "seed"


@dataclass(frozen=True)
class Spread:
    count: int
    mean: float | None
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(0, None, None)
        return cls(len(finite), statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else None)

    def text(self) -> str:
        if self.mean is None:
            return "-"
        return f"{self.mean:.6g}" if self.std is None else f"{self.mean:.6g} ± {self.std:.3g}"


@dataclass
class GroupSummary:
    sweep_id: str
    keys: list[str]
    metrics: list[str]  # the sweep's metric first
    groups: list[tuple[tuple[str, ...], int, dict[str, Spread]]] = field(default_factory=list)  # (key values, trials, spreads)


def group_keys(comparison: SweepComparison, requested: Sequence[str] | None) -> list[str]:
    """The hyperparameters to group by: the requested ones (each must be one of the sweep's), or every varied one but seed."""
    if not requested:
        return [key for key in comparison.differing if key != SEED_KEY]
    known = set(comparison.all_params)
    unknown = [key for key in requested if key not in known]
    if unknown:
        raise OrchError(
            f"--by {', '.join(unknown)}: not a hyperparameter of sweep {comparison.sweep_id}; "
            f"choose from {', '.join(sorted(known)) or '(none)'}"
        )
    return list(requested)


def summarise(comparison: SweepComparison, keys: Sequence[str], metrics: Sequence[str] = ()) -> GroupSummary:
    """Group the comparison's trials by `keys`; groups ordered by the sweep metric's mean (best first)."""
    names = [comparison.metric, *(m for m in metrics if m != comparison.metric)]
    members: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in comparison.rows:
        members.setdefault(tuple(str(row["all_params"].get(key, "-")) for key in keys), []).append(row)
    summary = GroupSummary(comparison.sweep_id, list(keys), names)
    for values, rows in members.items():
        spreads = {name: Spread.of([_metric(row, name, comparison.metric) for row in rows]) for name in names}
        summary.groups.append((values, len(rows), spreads))
    sign = 1.0 if comparison.mode == "min" else -1.0
    summary.groups.sort(key=lambda g: (g[2][comparison.metric].mean is None, sign * (g[2][comparison.metric].mean or 0.0)))
    return summary


def _metric(row: dict[str, Any], name: str, sweep_metric: str) -> Any:
    value = row["metric"] if name == sweep_metric else row["metrics"].get(name)
    return None if value is None else float(value)


def summary_table(summary: GroupSummary) -> Any:
    from rich.table import Table

    table = Table(title=f"sweep {summary.sweep_id}: {len(summary.groups)} groups by {', '.join(summary.keys) or '(all trials)'}")
    for key in summary.keys:
        table.add_column(key, justify="right")
    table.add_column("trials", justify="right")
    for name in summary.metrics:
        table.add_column(f"{name} mean ± std (n)", justify="right")
    for values, trials, spreads in summary.groups:
        cells = [f"{spreads[n].text()} ({spreads[n].count})" for n in summary.metrics]
        table.add_row(*values, str(trials), *cells)
    return table


def summary_csv(summary: GroupSummary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*summary.keys, "trials", *(f"{n}_{s}" for n in summary.metrics for s in ("mean", "std", "n"))])
    for values, trials, spreads in summary.groups:
        cells: list[Any] = []
        for name in summary.metrics:
            spread = spreads[name]
            cells += [
                "" if spread.mean is None else repr(spread.mean),
                "" if spread.std is None else repr(spread.std),
                spread.count,
            ]
        writer.writerow([*values, trials, *cells])
    return out.getvalue()


def summary_markdown(summary: GroupSummary) -> str:
    header = [*summary.keys, "trials", *(f"{n} mean ± std (n)" for n in summary.metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for values, trials, spreads in summary.groups:
        lines.append(
            "| "
            + " | ".join([*values, str(trials), *(f"{spreads[n].text()} ({spreads[n].count})" for n in summary.metrics)])
            + " |"
        )
    return "\n".join(lines) + "\n"


def summary_picture(summary: GroupSummary, out_dir: Path) -> Path:
    """The sweep metric's mean per group with one-standard-deviation error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary.metrics[0]
    shown = [(values, spreads[metric]) for values, _, spreads in summary.groups if spreads[metric].mean is not None]
    labels = ["\n".join(f"{k}={v}" for k, v in zip(summary.keys, values)) or "all" for values, _ in shown]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(shown) + 1.5), 3.8), dpi=100)
    ax.errorbar(
        range(len(shown)),
        [float(spread.mean or 0.0) for _, spread in shown],
        yerr=[spread.std or 0.0 for _, spread in shown],
        fmt="o",
        capsize=4,
    )
    ax.set_xticks(range(len(shown)), labels, fontsize=7)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{summary.sweep_id}", fontsize=8)
    fig.tight_layout()
    path = out_dir / f"groups_{metric}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def record_on_parent(tracking_uri: str, parent_run_id: str, summary: GroupSummary) -> list[str]:
    """The table (CSV and Markdown) and the picture as artifacts of the sweep's parent run; their paths."""
    import tempfile

    from orchestrator.tracking.client import TrackingClient

    client = TrackingClient(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="orch-groups-") as tmp:
        folder = Path(tmp)
        (folder / "groups.csv").write_text(summary_csv(summary))
        (folder / "groups.md").write_text(summary_markdown(summary))
        picture = summary_picture(summary, folder)
        client.log_artifacts(parent_run_id, folder, "summary")
    return [f"summary/{name}" for name in ("groups.csv", "groups.md", picture.name)]
