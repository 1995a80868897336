"""AVAE3DTrainable outside Ray: metrics, pictures, config errors, exact resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.avae3d.trainable import AVAE3DTrainable
from trainables.registry import get_trainable_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "resolution": 8,
    "grid_size": 8,
    "latent_dim": 4,
    "synthetic_train_per_class": 2,
    "synthetic_test_per_class": 1,
    "batch_size": 8,
    "device": "cpu",
}
METRICS = sorted(get_trainable_spec("avae3d").metrics)

_RESUME_SCRIPT = """
import json, sys
from ray.tune.trainable import trainable
trainable.DEFAULT_STORAGE_PATH = sys.argv[3]
from trainables.avae3d.trainable import AVAE3DTrainable
t = AVAE3DTrainable(config=json.loads(sys.argv[1]))
t.restore(sys.argv[2])
results = [t.train() for _ in range(2)]
print(json.dumps([{k: r[k] for k in json.loads(sys.argv[4])} for r in results]))
"""


@pytest.mark.usefixtures("ray_results_in_tmp")
def test_exact_resume_in_a_fresh_process(tmp_path):
    config = {**TINY, "epochs": 4, "eval_every": 2, "augmentation": "cube24", "optimisation": "exhaustive24"}
    straight = AVAE3DTrainable(config=config)
    expected = [straight.train() for _ in range(4)]
    first = AVAE3DTrainable(config=config)
    before = [first.train() for _ in range(2)]
    assert [{k: r[k] for k in METRICS} for r in before] == [{k: r[k] for k in METRICS} for r in expected[:2]]
    first.save(str(tmp_path / "ckpt"))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESUME_SCRIPT,
            json.dumps(config),
            str(tmp_path / "ckpt"),
            str(tmp_path / "ray_child"),
            json.dumps(METRICS + ["training_iteration", "done"]),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    # bitwise equal on CPU: weights, BN stats, optimizer, scheduler, RNGs, data order
    assert [{k: r[k] for k in METRICS} for r in resumed] == [{k: r[k] for k in METRICS} for r in expected[2:]]
    assert [r["training_iteration"] for r in resumed] == [3, 4] and resumed[-1]["done"] is True


@pytest.mark.usefixtures("ray_results_in_tmp")
@pytest.mark.parametrize(
    "variant",
    [
        {"augmentation": "none", "optimisation": "none", "posterior": "deterministic"},
        {
            "augmentation": "free",
            "optimisation": "restarts",
            "max_translation": 0.1,
            "n_restarts": 1,
            "n_keep": 1,
            "opt_steps": 1,
            "recon_loss": "weighted_bce",
            "posterior": "learned",
            "rotation_sampling": "euler",
        },
    ],
)
def test_one_epoch_reports_registered_float_metrics_and_pictures(variant, tmp_path):
    t = AVAE3DTrainable(config={**TINY, **variant, "epochs": 1})
    result = t.train()
    assert result["done"] is True and result["epoch"] == 1
    for name in METRICS:
        assert isinstance(result[name], (int, float)) and math.isfinite(result[name]), name
    assert 0 <= result["val_iou"] <= 1 and 0 < result["orientation_consistency"] <= 1
    t.save(str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["slices.png"]


def test_bad_config_lists_the_valid_keys(ray_results_in_tmp):
    with pytest.raises(ValueError, match="valid keys: .*optimisation"):
        AVAE3DTrainable(config={**TINY, "optimization": "none"})
    with pytest.raises(ValueError, match="multiple of 8"):
        AVAE3DTrainable(config={**TINY, "grid_size": 12})
    with pytest.raises(ValueError, match="needs data_root"):
        AVAE3DTrainable(config={**TINY, "dataset": "modelnet10"})
