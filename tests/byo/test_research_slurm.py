"""The lab's own research projects (research/: weight sharing, sparse top-k and nuclei grading, class trainables;
pruning, a plain train.py) on the real local SLURM cluster through `orch submit`, as a lab runs them from its own
repository: each sweep's job is preempted while it trains and finishes in the same MLflow run, every epoch logged
once, resumed from the project's own checkpoint (at most the steps since the last checkpoint redone)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.byo.test_lab_slurm import _ended, _orch, _preempt_each_node_once_training, _wait
from tests.cluster.test_slurm_sweeps import PROFILE, sweep_folder
from tests.harness.lab_workspace import commit_lab, write

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# One trial per project, long enough on the full 1,437 training digits that the job trains for a while after its
# third epoch (when it is preempted) on this 2-core machine.
SWEEPS: dict[str, dict[str, Any]] = {
    "weightshare": {
        "metric": "test_accuracy",
        "mode": "max",
        "search_space": {"variant": "resnet_small/repeat/2", "epochs": 20, "device": "cpu"},
        "steps_metric": "test_accuracy",
        "epochs": 20,
    },
    "topk": {
        "metric": "test_accuracy",
        "mode": "max",
        "search_space": {"variant": "topk/0.1", "epochs": 20, "attack_subset": 40, "pgd_steps": 2, "device": "cpu"},
        "steps_metric": "test_accuracy",
        "epochs": 20,
    },
    "nuclei": {
        "metric": "tile_accuracy",
        "mode": "max",
        "search_space": {"tile_size": 20, "n_patches": 120, "epochs": 30, "device": "cpu"},
        "steps_metric": "tile_accuracy",
        "epochs": 30,
    },
    "pruning": {
        "metric": "test_accuracy",
        "mode": "max",
        "search_space": {"sparsity": 0.75, "schedule": "iterative", "prune_rounds": 2, "epochs": 15, "finetune_epochs": 15},
        "steps_metric": "test_accuracy",
        "epochs": 30,  # dense epochs then fine-tuning epochs: one step each
    },
}


def _lab_with_research(root: Path) -> Path:
    """research/ copied into a lab's own repository (its root holds conf/), with the local cluster's profile."""
    shutil.copytree(REPO / "research", root, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    write(root / "conf" / "clusters" / "slurm.yaml", yaml.safe_load(PROFILE.read_text()))
    for project, spec in SWEEPS.items():
        sweep = {
            "name": f"{project}-preempt",
            "project": project,
            "metric": spec["metric"],
            "mode": spec["mode"],
            "search_space": spec["search_space"],
            "resources_per_trial": {"cpu": 1, "gpu": 0},
            "checkpoint": {"every_epochs": 1, "keep": 2},
        }
        write(root / "conf" / "sweeps" / f"{project}-preempt.yaml", sweep)
    return commit_lab(root, "the lab's research projects")


# One project's job at a time: the preemption then hits that job as soon as it trains, and no other project's
# preemption requeues it while it starts. With three jobs at once on this 2-core machine, weightshare (requeued while
# starting by a preemption meant for another project's job on its node) was not caught training on a node still to
# preempt within 420 s (docs/testing.md, flake register).
GROUPS = [(project,) for project in SWEEPS]


@pytest.mark.parametrize("projects", GROUPS, ids=["-".join(g) for g in GROUPS])
def test_research_projects_are_preempted_and_finish_in_the_same_runs(
    slurm_cluster: Any, tmp_path: Path, projects: tuple[str, ...]
) -> None:
    from mlflow.tracking import MlflowClient

    lab = _lab_with_research(tmp_path / "lab-repo")
    sweep_ids = {}
    for project in projects:
        done = _orch(slurm_cluster, lab, "submit", f"conf/sweeps/{project}-preempt.yaml", "--cluster", "slurm")
        assert done.returncode == 0, done.stdout + done.stderr
        sweep_ids[project] = done.stdout.split("submitted sweep ", 1)[1].split()[0]
    _preempt_each_node_once_training(slurm_cluster, lab, sweep_ids)
    states = _wait(slurm_cluster, lab, sweep_ids, _ended, "every sweep's end", timeout_s=600)

    client = MlflowClient(f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    for project, sweep_id in sweep_ids.items():
        spec = SWEEPS[project]
        assert [job["state"] for job in states[project]["jobs"]] == ["COMPLETED"], (project, states[project])
        attempts = json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())
        assert len(attempts) >= 2, (project, "the job was not requeued", attempts)
        runs = client.search_runs([client.get_experiment_by_name(project).experiment_id], f"tags.`orch.sweep_id` = '{sweep_id}'")
        trials = [r for r in runs if r.data.tags["orch.kind"] == "trial"]
        assert len(trials) == 1, (project, "one run per trial, never a new one after the requeue")
        run = trials[0]
        assert run.info.status == "FINISHED" and run.data.tags.get("orch.resumed") == "true", (project, run.data.tags)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, spec["steps_metric"])]
        assert steps == list(range(1, spec["epochs"] + 1)), (project, "every epoch once", steps)
        redone = [m.value for m in client.get_metric_history(run.info.run_id, "orch_redone_steps")]
        assert redone and max(redone) <= 2, (project, "resumed from its checkpoint, not from scratch", redone)
