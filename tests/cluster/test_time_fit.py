"""Time limits fitted to start early (backfill): the choice, and SLURM's real --test-only answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster.slurm.time_fit import candidates, choose, fit_time_limit, predicted_start
from orchestrator.kernel.config.models import SlurmSettings
from tests.cluster.test_slurm_sweeps import LONG, orch_env, profile_variant, sweep_folder
from tests.conftest import REPO, run_orch

T0 = 1_800_000_000.0


def test_candidates_halve_down_to_the_minimum() -> None:
    assert candidates(SlurmSettings(partition="p", time_limit_min=240, min_time_limit_min=30)) == [240, 120, 60, 30]
    assert candidates(SlurmSettings(partition="p", time_limit_min=10, min_time_limit_min=15)) == [10]


def test_longest_limit_among_the_earliest_starts_and_requeues_cover_the_rest() -> None:
    settings = SlurmSettings(partition="p", time_limit_min=240, max_requeues=1, min_time_limit_min=30)
    # 240 and 120 min would wait for a reservation; 60 and 30 fit in the gap before it.
    fit = choose(settings, {240: T0 + 3600, 120: T0 + 3600, 60: T0, 30: T0})
    assert fit.time_limit_min == 60 and fit.max_requeues == 7  # 2 x 240 min of work in 60-min pieces
    assert "60 min earlier" in fit.reason
    same = choose(settings, {240: T0, 120: T0, 60: T0})
    assert same.time_limit_min == 240 and same.max_requeues == 1
    assert choose(settings, {}).time_limit_min == 240


def test_fit_probes_each_candidate_once() -> None:
    settings = SlurmSettings(partition="p", time_limit_min=120, min_time_limit_min=30)
    asked = []

    def test_only(shape: SlurmSettings) -> str:
        asked.append(shape.time_limit_min)
        start = "2027-01-01T00:00:00" if shape.time_limit_min > 60 else "2026-12-31T23:00:00"
        return f"Job 1 to start at {start} using 1 processors on nodes n1 in partition p"

    assert fit_time_limit(settings, test_only).time_limit_min == 60 and asked == [120, 60, 30]


@pytest.mark.integration
def test_submit_with_fitted_time_limit_on_the_real_cluster(slurm_cluster: Any, tmp_path: Path) -> None:
    answer = slurm_cluster.run(["sbatch", "--test-only", "--partition", "low", "--time", "5", "--wrap", "true"]).stderr
    assert predicted_start(answer) is not None, answer  # the format SLURM really prints
    profile = profile_variant(
        tmp_path,
        "slurm-local-fit",
        slurm={"fit_time_limit": True, "time_limit_min": 30, "min_time_limit_min": 7, "max_requeues": 1},
    )
    result = run_orch(["submit", str(LONG), "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_id = result.stdout.split("submitted sweep ", 1)[1].split()[0]
    job_id = result.stdout.split("SLURM job(s) ", 1)[1].split(";")[0]
    try:
        fit = json.loads((sweep_folder(slurm_cluster, sweep_id) / "time_fit.json").read_text())
        assert sorted(map(int, fit["starts"])) == [7, 15, 30]  # every candidate was asked
        # On an idle cluster every limit starts now: the profile's own is kept.
        assert fit["time_limit_min"] == 30 and "starts as early" in fit["reason"]
        limit = slurm_cluster.run(["squeue", "--noheader", "--jobs", job_id, "--format=%l"]).stdout.strip()
        assert limit == "30:00", limit
    finally:
        run_orch(["cancel", sweep_id, "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=120)
