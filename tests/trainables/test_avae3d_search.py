"""The orientation searches on a constructed model whose loss is lowest in one orientation."""

from __future__ import annotations

import torch
from torch import nn

from trainables.avae3d.evaluation import orientation_consistency
from trainables.avae3d.model import VoxelVAE
from trainables.avae3d.rotations import composition_table, cube_rotation_matrices, rotate_cube
from trainables.avae3d.search import LossSpec, exhaustive_search, restarts_search
from trainables.data.shapes3d import boxes_to_mesh, generate_shape
from trainables.data.voxelize import voxelize_mesh


def _chair(n: int = 8) -> torch.Tensor:
    import numpy as np

    vertices, faces = boxes_to_mesh(generate_shape("chair", np.random.default_rng(1)))
    grid = voxelize_mesh(vertices, np.asarray(faces), n)
    return torch.from_numpy(grid).float()[None, None]


class TemplateModel(nn.Module):
    """Decodes every code to the same object: the loss is lowest where the input is it."""

    def __init__(self, template: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(20 * (template - 0.5))
        self.encode_calls = 0

    def encode(self, x):
        self.encode_calls += 1
        zero = x.flatten(1)[:, :2] * 0
        return zero, zero

    def decode(self, z):
        return self.logits.expand(z.shape[0], *self.logits.shape[1:])


def test_exhaustive_search_undoes_a_known_rotation_in_one_pass():
    template = _chair()
    model = TemplateModel(template)
    shown = torch.arange(24)
    x = rotate_cube(template.expand(24, -1, -1, -1, -1), shown)
    index, loss = exhaustive_search(model, x, LossSpec())
    assert model.encode_calls == 1  # all 24 x 24 candidates in one forward pass
    assert torch.equal(composition_table()[index, shown], torch.zeros(24, dtype=torch.int64))
    assert torch.all(loss < 1e-3 * template.numel())
    assert model.logits.grad is None and model.logits.requires_grad


def test_restarts_search_recovers_the_inverse_rotation():
    template = _chair()
    model = TemplateModel(template)
    shown = torch.tensor([3, 11, 20])
    x = rotate_cube(template.expand(3, -1, -1, -1, -1), shown)
    generator = torch.Generator().manual_seed(0)
    transform, loss = restarts_search(model, x, LossSpec(), generator, n_restarts=2, n_keep=1, n_steps=1)
    expected = cube_rotation_matrices()[shown].transpose(1, 2).float()  # the inverses
    assert torch.allclose(transform.rotation, expected, atol=1e-3)
    assert transform.translation is None and torch.all(loss < 1.0)
    assert model.logits.grad is None


def test_orientation_consistency_of_the_template_model_is_one():
    template = _chair()
    x = template.expand(10, -1, -1, -1, -1).clone()
    labels = torch.tensor([0] * 5 + [1] * 5)
    generator = torch.Generator().manual_seed(0)
    assert orientation_consistency(TemplateModel(template), x, labels, LossSpec(), generator, 4) == 1.0


def test_search_on_a_real_model_keeps_weights_gradient_free_and_mode():
    model = VoxelVAE(4, 8)
    model.train()
    x = (torch.rand(3, 1, 8, 8, 8) > 0.7).float()
    index, loss = exhaustive_search(model, x, LossSpec(with_kl=False))
    assert index.shape == (3,) and loss.shape == (3,)
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    # the search's choice is the argmin of the individually computed losses
    from trainables.avae.transforms import frozen
    from trainables.avae3d.search import object_loss

    with frozen(model), torch.no_grad():
        each = torch.stack([object_loss(model, rotate_cube(x, r), LossSpec(with_kl=False))[0] for r in range(24)], 1)
    assert torch.allclose(each.min(1).values, loss, rtol=1e-4)
