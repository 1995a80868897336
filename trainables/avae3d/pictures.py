"""Figure of the 3D AVAE trainable: mid-slices of inputs vs reconstructions (Agg backend)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["plot_slices"]


def plot_slices(path: Path, inputs: torch.Tensor, probs: torch.Tensor, title: str = "") -> None:
    """Columns = objects; rows = input / reconstruction mid-slice across each of the 3 axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_objects, mid = inputs.shape[0], inputs.shape[-1] // 2
    fig, axes = plt.subplots(6, n_objects, figsize=(1.2 * n_objects, 7.4), squeeze=False)
    for axis in range(3):
        for row, (grids, name) in enumerate(((inputs, "input"), (probs, "recon"))):
            r = 2 * axis + row
            for c in range(n_objects):
                image = grids[c, 0].select(axis, mid).detach().cpu().numpy()
                ax = axes[r, c]
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r, 0].set_ylabel(f"{name}\naxis {axis}", fontsize=7)
    fig.suptitle(title or "mid-slices: input vs reconstruction", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
