"""The pictures a checkpoint carries (logged as the trial run's ``pictures/`` artifacts): the cell-probability
heatmap of one test patch and its detections against the annotations. matplotlib (Agg) is imported here only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nuclei.detect import Detections
from nuclei.synthetic import CLASS_NAMES, Patch

__all__ = ["PICTURES", "write_pictures"]

PICTURES = "pictures"
_COLOURS = ("tab:blue", "tab:green", "tab:red")


def write_pictures(folder: Path, patch: Patch, cell_prob: np.ndarray, detections: Detections, matched: np.ndarray) -> None:
    """``heatmap.png`` and ``detections.png`` in ``folder`` (created)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    shown = ax.imshow(cell_prob, cmap="magma", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="1 - p(background)")
    ax.set_title(f"cell probability: {patch.name}", fontsize=8)
    ax.set_axis_off()
    fig.savefig(folder / "heatmap.png", bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(patch.image)
    for c, name in enumerate(CLASS_NAMES):
        truth = patch.centres[patch.labels == c]
        ax.scatter(
            truth[:, 0], truth[:, 1], s=120, facecolors="none", edgecolors=_COLOURS[c], linewidths=1.2, label=f"true {name}"
        )
        for hit, marker, kind in ((True, "+", "matched"), (False, "x", "unmatched")):
            chosen = (detections.labels == c) & ((matched >= 0) == hit)
            points = detections.centres[chosen]
            ax.scatter(points[:, 0], points[:, 1], s=40, marker=marker, color=_COLOURS[c], label=f"pred {name} {kind}")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("circles: annotations; +: matched detections; x: unmatched (colour = class)", fontsize=7)
    ax.set_axis_off()
    fig.savefig(folder / "detections.png", bbox_inches="tight")
    plt.close(fig)
