"""HVAETrainable outside Ray: metrics, pictures, registry entry, exact resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.hvae.trainable import HVAETrainable
from trainables.registry import get_trainable_spec

REPO_ROOT = Path(__file__).resolve().parents[2]

TINY_HVAE = {
    "tile_size": 8,
    "grid_size": 2,
    "tile_latent_dim": 3,
    "global_latent_dim": 4,
    "hidden": 16,
    "n_train": 48,
    "n_val": 16,
    "batch_size": 16,
    "epochs": 2,
    "device": "cpu",
}

_RESUME_SCRIPT = """
import json, sys
from ray.tune.trainable import trainable
trainable.DEFAULT_STORAGE_PATH = sys.argv[3]
from trainables.hvae.trainable import HVAETrainable
t = HVAETrainable(config=json.loads(sys.argv[1]))
t.restore(sys.argv[2])
results = [t.train() for _ in range(2)]
print(json.dumps([{k: r[k] for k in json.loads(sys.argv[4])} for r in results]))
"""


def _pick(result: dict, names: list[str]) -> dict:
    return {name: result[name] for name in names}


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_exact_resume_in_a_fresh_process(tmp_path):
    # The "original" loss draws the same noise; one loss keeps the subprocess cost down.
    config = {**TINY_HVAE, "epochs": 4, "eval_every": 2, "loss": "elbo"}
    straight = HVAETrainable(config=config)
    expected = [straight.train() for _ in range(4)]
    names = sorted(get_trainable_spec("hvae").metrics) + ["done"]
    names = [n for n in names if n in expected[-1]]

    first = HVAETrainable(config=config)
    before = [first.train() for _ in range(2)]
    assert [_pick(r, names) for r in before] == [_pick(r, names) for r in expected[:2]]
    first.save(str(tmp_path / "ckpt"))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESUME_SCRIPT,
            json.dumps(config),
            str(tmp_path / "ckpt"),
            str(tmp_path / "ray_results_child"),
            json.dumps(names + ["training_iteration"]),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    assert [_pick(r, names) for r in resumed] == [_pick(r, names) for r in expected[2:]]
    assert [r["training_iteration"] for r in resumed] == [3, 4]
    assert resumed[-1]["done"] is True


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize("loss", ["elbo", "original"])
def test_metrics_pictures_and_registry(tmp_path, loss):
    t = HVAETrainable(config={**TINY_HVAE, "epochs": 1, "loss": loss})
    result = t.train()
    spec = get_trainable_spec("hvae")
    assert spec.config_model().__name__ == "HVAEConfig"
    for name in spec.metrics:
        assert name in result, name
        value = result[name]
        assert isinstance(value, (int, float)) and math.isfinite(value), name
    assert result["val_elbo"] < 0 < result["val_mse"] < 1
    assert result["done"] is True
    t.save(str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == [
        "reconstructions.png",
        "samples.png",
    ]


def test_bad_config_fails_with_the_valid_keys(ray_results_in_tmp):
    with pytest.raises(ValueError, match="valid keys: .*tile_latent_dim"):
        HVAETrainable(config={"tile_latent_dims": 4})
    with pytest.raises(ValueError, match="multiple of 4"):
        HVAETrainable(config={**TINY_HVAE, "tile_size": 10})
