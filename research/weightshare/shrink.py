"""A repeat-shared network as the thin network it is (the original's shrink.ipynb).

Every tensor entering a conv of a repeat-shared stage is f copies of a thin one, so the next conv (or the
classifier) acts on the copies with the sum of its weight slices: weight[:, j + g*C/f] summed over g.
With the shortcut repeated too (the fixed version) the thin network with those summed weights computes
exactly the same function; with the full-width shortcut (the forgotten one) no such thin network exists
and `shrink_state_dict` says which tensor does not fit.
"""

from __future__ import annotations

import torch

__all__ = ["fold_input_copies", "shrink_state_dict"]


def fold_input_copies(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """(out, f*c, ...) -> (out, c, ...): the sum over the f input copies c, c + C/f, ... of each column."""
    out_channels, in_channels = weight.shape[:2]
    thin = in_channels // factor
    return weight.reshape(out_channels, factor, thin, *weight.shape[2:]).sum(dim=1)


def shrink_state_dict(repeated: dict[str, torch.Tensor], thin: dict[str, torch.Tensor], factor: int) -> dict[str, torch.Tensor]:
    """The thin network's state_dict from the repeat-shared one's (same module names: RepeatConv2d's
    `conv`/`bn` are ConvBN's). Tensors whose input dimension is `factor` times wider are folded."""
    if set(repeated) != set(thin):
        raise ValueError(f"the networks differ in their tensors: {sorted(set(repeated) ^ set(thin))[:4]}")
    shrunk = {}
    for name, target in thin.items():
        source = repeated[name]
        if source.shape == target.shape:
            shrunk[name] = source.clone()
        elif source.dim() >= 2 and source.shape[0] == target.shape[0] and source.shape[1] == factor * target.shape[1]:
            shrunk[name] = fold_input_copies(source, factor)
        else:
            raise ValueError(
                f"{name}: {tuple(source.shape)} does not fold onto the thin {tuple(target.shape)} "
                "(a full-width tensor in a repeat-shared stage: the forgotten shortcut?)"
            )
    return shrunk
