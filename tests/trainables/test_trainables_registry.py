"""The registry: instant to import (no torch, no ray) and strict about names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.registry import UnknownTrainableError, available_trainables, get_trainable_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_registry_and_config_model_do_not_import_torch_or_ray():
    script = (
        "import json, sys\n"
        "import trainables\n"
        "from trainables.registry import get_trainable_spec\n"
        "model = get_trainable_spec('avae').config_model()\n"
        "model()\n"
        "print(json.dumps(sorted(m for m in ('torch', 'ray', 'numpy', 'sklearn') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownTrainableError) as info:
        get_trainable_spec("no-such-trainable")
    assert isinstance(info.value, KeyError)
    assert "no-such-trainable" in str(info.value)
    for name in available_trainables():
        assert name in str(info.value)


def test_avae_spec():
    spec = get_trainable_spec("avae")
    assert "avae" in available_trainables()
    assert spec.config_model().__name__ == "AVAEConfig"
    for metric in ("val_loss", "train_loss", "orientation_r1", "orientation_r2", "epoch"):
        assert spec.reports_metric(metric)
    assert "val_loss_rot180" in spec.metrics
    assert spec.reports_metric("val_loss_rot270")
    assert not spec.reports_metric("val_accuracy")


def test_trainable_class_loads():
    from ray import tune

    cls = get_trainable_spec("avae").trainable_class()
    assert issubclass(cls, tune.Trainable)


def test_an_installed_package_registers_a_class_by_name(monkeypatch, tmp_path):
    """The `orch.trainables` entry-point group: a name pointing at a plain Ray Tune class or function."""
    from importlib.metadata import EntryPoint

    import trainables.registry as registry

    (tmp_path / "labpkg.py").write_text(
        "from ray import tune\n\nclass Net(tune.Trainable):\n    def step(self):\n        return {'done': True}\n\n"
        "def train(config):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    points = {
        name: EntryPoint(name, value, registry.ENTRY_POINT_GROUP)
        for name, value in (("labnet", "labpkg:Net"), ("labfn", "labpkg:train"), ("avae", "trainables.specs:AVAE"))
    }
    monkeypatch.setattr(registry, "_entry_points", lambda: points)
    assert registry.available_trainables() == ["avae", "labfn", "labnet"]
    assert registry.get_trainable_spec("labnet").kind == "class"
    assert registry.get_trainable_spec("labfn").kind == "function"
    assert registry.resolve_trainable("labnet").trainable().__name__ == "Net"


def test_command_placeholders_fill_one_argument_each():
    from trainables.command import _metrics_of, fill
    from trainables.registry import command_spec, placeholders

    spec = command_spec("python train.py --lr {lr} --opt {optimizer.name} --note '{note}'")
    assert placeholders(spec.command) == ["lr", "optimizer.name", "note"]
    argv = fill(spec.command, {"lr": 0.1, "optimizer": {"name": "adam w"}, "note": "a'; rm -rf ~ #"})
    assert argv[1:] == ["train.py", "--lr", "0.1", "--opt", "adam w", "--note", "a'; rm -rf ~ #"]
    assert _metrics_of('{"epoch": 2, "loss": 0.5, "name": "x", "ok": true, "bad": NaN}') == {"epoch": 2, "loss": 0.5}
    assert _metrics_of("epoch 2 loss 0.5") is None and _metrics_of("[1, 2]") is None
