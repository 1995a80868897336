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
