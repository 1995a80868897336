"""`orch compare --group-by` arithmetic: groups over every varied hyperparameter but seed, mean and sample std."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from orchestrator.kernel.errors import OrchError
from orchestrator.laptop.compare import SweepComparison
from orchestrator.laptop.seed_groups import group_keys, summarise, summary_csv, summary_markdown, summary_picture


def comparison(mode: str = "min") -> SweepComparison:
    """Two train modes x three seeds; one trial without a value; `acc` as a second metric."""
    losses = {
        ("upright", "0"): 107.4,
        ("upright", "1"): 108.0,
        ("upright", "2"): 106.9,
        ("train_opt", "0"): 108.2,
        ("train_opt", "1"): 109.0,
        ("train_opt", "2"): None,
    }
    rows = []
    for (train_mode, seed), loss in losses.items():
        params = {"train_mode": train_mode, "seed": seed, "epochs": "40"}
        rows.append(
            {
                "trial_id": f"{train_mode}-{seed}",
                "status": "FINISHED",
                "metric": loss,
                "params": {},
                "all_params": params,
                "metrics": {"acc": 0.5 + int(seed) / 10},
                "run_id": "r",
                "steps": None,
            }
        )
    return SweepComparison("s1", "1", "p", "val_loss", mode, ["seed", "train_mode"], rows, ["epochs", "seed", "train_mode"])


def test_default_groups_are_every_varied_hyperparameter_but_seed():
    assert group_keys(comparison(), None) == ["train_mode"]
    assert group_keys(comparison(), ["epochs"]) == ["epochs"]
    with pytest.raises(OrchError, match="--by lr: not a hyperparameter of sweep s1; choose from epochs, seed, train_mode"):
        group_keys(comparison(), ["lr"])


def test_mean_std_and_count_per_group_best_first():
    summary = summarise(comparison(), ["train_mode"], ["acc"])
    (first, n1, s1), (second, n2, s2) = summary.groups
    assert first == ("upright",) and n1 == 3 and second == ("train_opt",) and n2 == 3
    assert s1["val_loss"].count == 3 and s1["val_loss"].mean == pytest.approx(statistics.fmean([107.4, 108.0, 106.9]))
    assert s1["val_loss"].std == pytest.approx(statistics.stdev([107.4, 108.0, 106.9]))
    assert s2["val_loss"].count == 2  # the trial without a value is counted as a trial, not as a value
    assert s2["acc"].mean == pytest.approx(0.6) and s2["acc"].count == 3
    assert [g[0] for g in summarise(comparison("max"), ["train_mode"]).groups] == [("train_opt",), ("upright",)]


def test_one_trial_has_no_std_and_the_files_agree(tmp_path):
    summary = summarise(comparison(), ["train_mode", "seed"])
    assert all(spreads["val_loss"].std is None for _, _, spreads in summary.groups)
    rows = list(csv.DictReader(io.StringIO(summary_csv(summarise(comparison(), ["train_mode"])))))
    assert rows[0]["train_mode"] == "upright" and rows[0]["val_loss_n"] == "3"
    assert float(rows[0]["val_loss_std"]) == pytest.approx(statistics.stdev([107.4, 108.0, 106.9]))
    markdown = summary_markdown(summarise(comparison(), ["train_mode"]))
    assert "| upright | 3 | 107.433 ± 0.551 (3) |" in markdown
    picture = summary_picture(summarise(comparison(), ["train_mode"]), tmp_path)
    assert picture.name == "groups_val_loss.png" and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
