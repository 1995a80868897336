"""Figures of the AVAE trainable (matplotlib, Agg backend): reconstructions, orientations."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from trainables.avae.loss import DEFAULT_OBJECTIVE, Objective
from trainables.avae.model import ConvVAE
from trainables.avae.transforms import TransformKind, frozen, inverse_transform, transform_images

__all__ = ["plot_orientation_histogram", "plot_reconstructions", "save_rotation_history"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reconstructions(
    path: Path,
    model: ConvVAE,
    inputs: dict[int, torch.Tensor],
    thetas: dict[int, torch.Tensor],
    transform: TransformKind = "rotation",
    objective: Objective = DEFAULT_OBJECTIVE,
) -> None:
    """For each presentation angle: inputs, reconstructions A^-1(dec), canonical dec(z)."""
    with frozen(model), torch.no_grad():
        rows, names = [], []
        for deg, x in inputs.items():
            theta = thetas[deg]
            x_in = transform_images(objective.prepare(x), theta, transform)
            canonical = torch.sigmoid(model.decode(model.encode(x_in)[0]))
            rows += [x, inverse_transform(canonical, theta, transform), canonical]
            names += [f"input {deg}°", "reconstruction", "canonical"]
    n_cols = rows[0].shape[0]
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9, len(rows) * 0.95))
    for r, (row, name) in enumerate(zip(rows, names)):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(row[c, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_orientation_histogram(path: Path, psi: torch.Tensor, labels: torch.Tensor, title: str = "") -> None:
    """Per-class histogram of the encoding orientation psi = phi + theta* (degrees)."""
    plt = _pyplot()
    classes = labels.unique().tolist()
    n_cols = 5
    n_rows = math.ceil(len(classes) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 1.9 * n_rows), squeeze=False)
    degrees = torch.rad2deg(psi).numpy()
    for ax, label in zip(axes.flat, classes):
        ax.hist(degrees[(labels == label).numpy()], bins=36, range=(0, 360), color="tab:blue")
        ax.set_title(f"digit {label}", fontsize=9)
        ax.set_xticks([0, 90, 180, 270, 360])
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(classes) :]:
        ax.axis("off")
    fig.suptitle(title or "encoding orientation ψ = φ + θ* (degrees)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_rotation_history(path: Path, history: dict[str, torch.Tensor]) -> None:
    """The chosen transform per test digit per evaluation as a small ``.npz``.

    ``history`` (see ``AVAETrainable.rotation_history``): ``epochs`` (E,), ``labels`` (N,),
    ``phi`` (E, N) presentation angle, ``theta`` (E, N) chosen rotation (radians), and
    for affine searches ``params`` (E, N, 2, 2); float16/float32 to keep it small.
    """
    import numpy as np

    # numpy's stub mistypes **arrays (as allow_pickle)
    np.savez_compressed(path, **{name: value.numpy() for name, value in history.items()})  # type: ignore[arg-type]
