"""Figures of the HVAE trainable (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["plot_image_rows"]


def plot_image_rows(path: Path, rows: list[tuple[str, torch.Tensor]], title: str = "") -> None:
    """One row per (name, images (N, 1, H, W) in [0, 1]); grey scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.8 * n_cols, 1.9 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[c, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
