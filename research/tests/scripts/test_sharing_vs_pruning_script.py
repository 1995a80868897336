"""research/scripts/sharing_vs_pruning.py: the grouping over seeds, and the plot from real MLflow runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sharing_vs_pruning.py"
_spec = importlib.util.spec_from_file_location("sharing_vs_pruning", SCRIPT)
assert _spec and _spec.loader
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def _run(params: dict, metrics: dict) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(params=params, metrics=metrics))


def test_sharing_points_are_means_over_seeds_with_the_baseline_in_every_curve() -> None:
    runs = [
        _run({"variant": "resnet_small/none/1", "seed": s}, {"test_accuracy": a, "unique_params": 100})
        for s, a in ((0, 0.9), (1, 0.8))
    ] + [
        _run({"variant": "resnet_small/thin/2", "seed": s}, {"test_accuracy": a, "unique_params": 30})
        for s, a in ((0, 0.7), (1, 0.5))
    ]
    runs.append(_run({"variant": "separable_small/thin/2", "seed": 0}, {"test_accuracy": 0.1, "unique_params": 5}))
    curves = script.sharing_curves(runs, "resnet_small")
    assert list(curves) == ["resnet_small thin"]
    (x0, m0, s0, n0), (x1, m1, s1, n1) = curves["resnet_small thin"]
    assert (x0, n0, x1, n1) == (30, 2, 100, 2)
    assert m0 == pytest.approx(60.0) and s0 == pytest.approx(14.1421, rel=1e-4)
    assert m1 == pytest.approx(85.0) and s1 == pytest.approx(7.0711, rel=1e-4)


def test_pruning_points_per_schedule_share_the_dense_point() -> None:
    runs = [
        _run({"schedule": "oneshot", "sparsity": "0.0"}, {"test_accuracy": 0.9, "nonzero_params": 1000}),
        _run({"schedule": "iterative", "sparsity": "0.0"}, {"test_accuracy": 0.8, "nonzero_params": 1000}),
        _run({"schedule": "oneshot", "sparsity": "0.9"}, {"test_accuracy": 0.7, "nonzero_params": 100}),
        _run({"schedule": "iterative", "sparsity": "0.9"}, {"test_accuracy": 0.6, "nonzero_params": 100}),
    ]
    curves = script.pruning_curves(runs)
    assert sorted(curves) == ["pruning iterative", "pruning oneshot"]
    assert curves["pruning oneshot"][0][:2] == (100, pytest.approx(70.0))
    assert curves["pruning oneshot"][1][:2] == (1000, pytest.approx(85.0)) and curves["pruning oneshot"][1][3] == 2


def test_unknown_sweep_is_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sharing", "nope", "--pruning", "nope", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: no trial runs of sweep nope in ")
    assert "Traceback" not in done.stderr
