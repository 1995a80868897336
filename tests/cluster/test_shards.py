"""Shards of a sweep (SLURM `layout: array`): materialising trials, splitting them, the shard's
Tune wrapper as trainables and callbacks see it, the sweep folder's per-shard files, and the
array job script (a golden file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster.node import shards
from cluster.node.shards import ShardTrial
from orchestrator.kernel.config.loading import load_sweep
from orchestrator.kernel.config.search_space import Sampler, parse_search_space
from orchestrator.kernel.sweep_folder import Bundle
from tests.conftest import REPO

ARRAY_SWEEP = REPO / "conf" / "sweeps" / "avae-slurm-array.yaml"
GOLDEN_ARRAY = Path(__file__).parent / "golden" / "sbatch_array.sh"


def _resolved(conf_tree: Any, **changes: Any) -> Any:
    import yaml

    data = {**yaml.safe_load(ARRAY_SWEEP.read_text()), **changes}
    return load_sweep(conf_tree.write("sweeps", data["name"], data))


# ---------------------------------------------------------------------------- materialising
def test_trials_are_grid_times_samples_with_full_configs(conf_tree: Any) -> None:
    resolved = _resolved(conf_tree)
    trials, seed = shards.materialise(resolved)
    assert seed == 7 and len(trials) == resolved.num_trials == 4
    assert [t.trial_id for t in trials] == ["t0000", "t0001", "t0002", "t0003"]
    # Sample-major like Ray Tune: every sample repeats the whole grid.
    assert [t.config["latent_dim"] for t in trials] == [2, 3, 2, 3]
    assert [sorted(t.sampled) for t in trials] == [["latent_dim", "lr"]] * 4
    lrs = [t.config["lr"] for t in trials]
    assert len(set(lrs)) == 4 and all(type(lr) is float and 1e-4 <= lr <= 1e-2 for lr in lrs)
    # The full config the trainable gets: project defaults, then the sweep's constants and samples.
    from trainables.avae.config import AVAEConfig

    for trial in trials:
        assert trial.config["batch_size"] == 64 and trial.config["train_mode"] == "upright" and trial.config["seed"] == 0
        AVAEConfig.model_validate(trial.config)


def test_materialising_is_deterministic(conf_tree: Any) -> None:
    resolved = _resolved(conf_tree)
    assert shards.materialise(resolved) == shards.materialise(resolved)
    other = _resolved(conf_tree, name="other-seed", search={"seed": 8})
    assert [t.config["lr"] for t in shards.materialise(other)[0]] != [t.config["lr"] for t in shards.materialise(resolved)[0]]
    # Without search.seed a seed is drawn, recorded, and reproduces the same trials.
    unseeded = _resolved(conf_tree, name="unseeded", search={})
    trials, seed = shards.materialise(unseeded)
    assert shards.materialise(unseeded, seed=seed) == (trials, seed)


def test_samplers_draw_like_ray_tune() -> None:
    rng = np.random.default_rng(0)
    assert {Sampler("x", "randint", (0, 3)).draw(rng) for _ in range(200)} == {0, 1, 2}  # high excluded
    drawn = [Sampler("x", "choice", ("a", [1], 3)).draw(rng) for _ in range(200)]
    assert all(value in ("a", [1], 3) for value in drawn) and {"a", 3} <= {v for v in drawn if not isinstance(v, list)}
    logs = [Sampler("x", "loguniform", (1e-4, 1e-2)).draw(rng) for _ in range(2000)]
    assert 1e-4 <= min(logs) and max(logs) <= 1e-2 and 0.4 < sum(v < 1e-3 for v in logs) / len(logs) < 0.6
    space = parse_search_space({"a": {"grid": [1, 2]}, "b": {"grid": ["x", "y", "z"]}, "c": 5})
    assert space.grid_points()[:2] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}] and len(space.grid_points()) == 6
    assert len(space.draw_trials(3, rng)) == 18 and space.draw_trials(1, rng)[0] == {"c": 5, "a": 1, "b": "x"}


# ---------------------------------------------------------------------------- splitting
def _trials(count: int) -> list[ShardTrial]:
    return [ShardTrial(trial_id, {"i": i}, {"i": i}) for i, trial_id in enumerate(shards.trial_ids(count))]


@pytest.mark.parametrize("count", [1, 2, 4, 7, 8, 25])
@pytest.mark.parametrize("asked", [1, 2, 3, 4, 10])
def test_split_deals_every_trial_once_round_robin(count: int, asked: int) -> None:
    trials = _trials(count)
    split = shards.split(trials, asked)
    assert len(split) == min(asked, count) and [s.index for s in split] == list(range(len(split)))
    dealt = [t.trial_id for s in split for t in s.trials]
    assert sorted(dealt) == [t.trial_id for t in trials]  # every trial exactly once
    sizes = [len(s.trials) for s in split]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert all(list(s.trials) == trials[s.index :: len(split)] for s in split)


def test_trial_ids_widen_past_ten_thousand() -> None:
    ids = shards.trial_ids(10_001)
    assert ids[0] == "t00000" and ids[-1] == "t10000" and ids == sorted(ids)


def test_plan_round_trips_through_shards_json(conf_tree: Any, tmp_path: Path) -> None:
    plan = shards.plan_shards(_resolved(conf_tree), 2)
    path = tmp_path / "shards.json"
    shards.write_plan(path, plan)
    assert shards.read_plan(path) == plan and plan.num_trials == 4
    assert json.loads(path.read_text())["shards"][1]["trials"][0]["trial_id"] == "t0001"


# ---------------------------------------------------------------------------- inside a shard's experiment
def test_param_space_runs_each_trial_once_and_trainable_unwraps() -> None:
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    shard = shards.Shard(1, tuple(_trials(5)[1::2]))
    configs = [config for _, config in generate_variants(shards.param_space(shard))]
    assert [shards.trial_id_of(c) for c in configs] == ["t0001", "t0003"]
    assert [shards.unwrap(c) for c in configs] == [{"i": 1}, {"i": 3}]

    class Recorder(tune.Trainable):
        def setup(self, config: dict[str, Any]) -> None:
            self.seen = config

        def step(self) -> dict[str, Any]:
            return {"done": True}

    wrapped = shards.unwrapping_trainable(Recorder)
    assert wrapped.__name__ == "Recorder" and issubclass(wrapped, Recorder)
    trainable = wrapped(config=configs[0])
    try:
        assert trainable.seen == {"i": 1}
    finally:
        trainable.stop()


class _FakeTrial:
    def __init__(self, trial_id: str, status: str = "RUNNING") -> None:
        self.trial_id = f"ray_{trial_id}"
        self.config = {shards.TRIAL_KEY: {"id": trial_id, "config": {"model": {"lr": 0.1}, "epochs": 2}}}
        self.status = status
        self.num_failures = 0


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, list[str]]] = []

    def __getattr__(self, hook: str) -> Any:
        def record(**info: Any) -> None:
            trial = info.get("trial")
            self.calls.append(
                (hook, trial and trial.trial_id, trial and trial.config, [t.trial_id for t in info.get("trials", [])])
            )

        return record


def test_shard_callbacks_see_stable_ids_and_real_configs(tmp_path: Path) -> None:
    from cluster.node.trial_status import ShardTrials, TrialStatusWriter

    inner = _Recorder()
    status = TrialStatusWriter(tmp_path / "trials-s0.json", "val_loss", "123_0", min_interval_s=0)
    callback = ShardTrials([inner, status])  # type: ignore[list-item]
    one, two = _FakeTrial("t0000"), _FakeTrial("t0002", status="PENDING")
    callback.on_trial_start(iteration=1, trials=[one, two], trial=one)
    callback.on_trial_result(iteration=2, trials=[one, two], trial=one, result={"val_loss": 0.5, "epoch": 1})
    callback.on_step_end(iteration=3, trials=[one, two])
    assert inner.calls[0] == ("on_trial_start", "t0000", {"model": {"lr": 0.1}, "epochs": 2}, ["t0000", "t0002"])
    written = json.loads((tmp_path / "trials-s0.json").read_text())["trials"]
    assert written["t0000"]["state"] == "RUNNING" and written["t0000"]["metric"] == 0.5 and written["t0000"]["epoch"] == 1
    assert written["t0002"]["state"] == "PENDING" and set(written) == {"t0000", "t0002"}


def test_trial_view_gives_mlflow_the_real_params() -> None:
    from cluster.node.trial_status import TrialView
    from orchestrator.kernel import tracking_layout as layout

    view = TrialView(_FakeTrial("t0003"))
    assert view.trial_id == "t0003" and view.num_failures == 0 and view.status == "RUNNING"
    assert layout.trial_params(view.config) == {"epochs": "2", "model.lr": "0.1"}


def test_array_task_job_id_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster.node.trial_status import slurm_job_id

    monkeypatch.setenv("SLURM_JOB_ID", "125")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert slurm_job_id() == "125"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "123")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert slurm_job_id() == "123_1"


# ---------------------------------------------------------------------------- the sweep folder
def test_bundle_keeps_per_shard_files_apart(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    assert bundle.experiment_dir("sw") == tmp_path / "ray_results" / "sw"
    assert bundle.experiment_dir("sw", 3) == tmp_path / "ray_results" / "sw-s3"
    assert bundle.trials_file_of(None) == bundle.trials_file and bundle.trials_file_of(2).name == "trials-s2.json"
    assert bundle.runs_file_of(None) == bundle.runs_file and bundle.runs_file_of(2).name == "mlflow_runs-s2.json"
    for shard in (10, 2):
        bundle.experiment_dir("sw", shard).mkdir(parents=True)
        bundle.trials_file_of(shard).write_text("{}")
        bundle.runs_file_of(shard).write_text("{}")
    assert [p.name for p in bundle.experiment_dirs("sw")] == ["sw-s2", "sw-s10"]
    assert list(bundle.trials_files()) == [2, 10]
    assert [p.name for p in bundle.runs_files()] == ["mlflow_runs-s2.json", "mlflow_runs-s10.json"]


def test_status_lists_every_trial_of_a_sharded_sweep(conf_tree: Any, tmp_path: Path) -> None:
    from orchestrator.login.sweeps import sweep_trials

    bundle = Bundle(tmp_path)
    shards.write_plan(bundle.shards_file, shards.plan_shards(_resolved(conf_tree), 2))
    bundle.trials_file_of(1).write_text(
        json.dumps(
            {"trials": {"t0001": {"trial_id": "t0001", "state": "TERMINATED", "epoch": 2, "metric": 0.25, "job_id": "123_1"}}}
        )
    )
    trials = sweep_trials(bundle, ["123_0", "123_1"])
    assert [(t["trial_id"], t["state"], t["shard"], t["job_id"]) for t in trials] == [
        ("t0000", "PENDING", 0, "123_0"),
        ("t0001", "TERMINATED", 1, "123_1"),
        ("t0002", "PENDING", 0, "123_0"),
        ("t0003", "PENDING", 1, "123_1"),
    ]
    assert trials[1]["metric"] == 0.25


def test_array_tasks_match_sacct_records() -> None:
    from orchestrator.login.sweeps import record_for

    records = {"123_0": "done", "124_[1-3,5%2]": "pending", "125": "single"}
    assert record_for("123_0", records) == "done" and record_for("125", records) == "single"
    assert [record_for(f"124_{i}", records) for i in range(7)] == [None, "pending", "pending", "pending", None, "pending", None]
    assert record_for("123_1", records) is None and record_for("126_0", records) is None


def test_parent_run_ends_with_the_last_shard(tmp_path: Path) -> None:
    from cluster.node.job_entry import _sweep_status

    bundle = Bundle(tmp_path)
    (tmp_path / "result-9_0.json").write_text(json.dumps({"shard": 0, "failed": 0}))
    assert _sweep_status(bundle, 2) is None
    (tmp_path / "result-9_1.json").write_text(json.dumps({"shard": 1, "failed": 0}))
    assert _sweep_status(bundle, 2) == "FINISHED"
    (tmp_path / "result-9_1.json").write_text(json.dumps({"shard": 1, "failed": 1}))
    assert _sweep_status(bundle, 2) == "FAILED"


# ---------------------------------------------------------------------------- the array job
def test_array_job_script_matches_golden_file() -> None:
    from cluster.slurm.submitit_backend import job_parameters, make_executor
    from tests.cluster.test_sbatch_script import REMOTE, SETTINGS

    sweep_id = "avae-tiny-20261123-120000-abcd"
    executor = make_executor(SETTINGS, REMOTE, sweep_id, Bundle(Path(f"/scratch/orch/sweeps/{sweep_id}")), shards=4)
    executor.parameters["map_count"] = 4  # what submitit sets for an array of 4 (SlurmExecutor._internal_process_submissions)
    text = executor._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "uid")
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        GOLDEN_ARRAY.write_text(text)
    assert text == GOLDEN_ARRAY.read_text(), "regenerate with ORCH_UPDATE_GOLDEN=1 after an intended change"
    assert "#SBATCH --array=0-3%4" in text and "submitit/%A_%a/%A_%a_0_log.out" in text
    params = job_parameters(SETTINGS, REMOTE, "s-1", "/b", shards=4)
    assert params["comment"] == "orch-sweep=s-1 orch-shards=4" and params["job_name"] == "orch.s-1"
    assert job_parameters(SETTINGS, REMOTE, "s-1", "/b")["comment"] == "orch-sweep=s-1"
