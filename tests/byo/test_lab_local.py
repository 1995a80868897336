"""A lab's own project, outside this repository: `orch init`, `orch validate` and `orch run` of a plain Ray
Tune class, a function trainable and a `train.py` command, on this machine with real Ray and MLflow; and
the bad trainables a new user writes, each refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import FORMS, make_lab, write

EPOCHS = 3


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "lab-repo"  # pytest's tmp is outside this repository: the lab's own git
    root.mkdir()
    made = run_orch(["init"], cwd=root)
    assert made.returncode == 0, made.stdout + made.stderr
    assert {"created conf/projects/example.yaml", "created orch_example.py"} <= set(made.stdout.splitlines())
    return make_lab(root, epochs=EPOCHS, lrs=(0.1, 0.3))


def test_init_keeps_what_exists(tmp_path: Path) -> None:
    (tmp_path / "conf" / "sweeps").mkdir(parents=True)
    (tmp_path / "conf" / "sweeps" / "example.yaml").write_text("name: mine\n")
    made = run_orch(["init"], cwd=tmp_path)
    assert made.returncode == 0 and "kept conf/sweeps/example.yaml (it exists)" in made.stdout, made.stdout
    assert (tmp_path / "conf" / "sweeps" / "example.yaml").read_text() == "name: mine\n"
    assert (tmp_path / "conf" / "projects" / "example.yaml").exists() and (tmp_path / "orch_example.py").exists()


@pytest.mark.integration
def test_each_form_validates_and_runs_tracked_per_step(lab: Path) -> None:
    from mlflow.tracking import MlflowClient

    files = [str(p.relative_to(lab)) for p in sorted((lab / "conf").glob("*/*.yaml"))]
    checked = run_orch(["validate", *files], cwd=lab)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "project 'quad-cmd' (command: python)" in checked.stdout and "project 'quad-fn' (lab.quad:train)" in checked.stdout
    warned = checked.stderr
    assert "conf/sweeps/lab-cmd.yaml: a command checkpoints only by writing to $ORCH_CHECKPOINT_DIR" in warned, warned
    assert "conf/sweeps/lab-fn.yaml: a function trainable checkpoints only when it reports one" in warned, warned
    assert "lab-cls.yaml" not in warned  # a class is checkpointed by Tune, on request too

    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    for form in FORMS:
        ran = run_orch(["run", f"conf/sweeps/lab-{form}.yaml"], cwd=lab, timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        experiment = client.get_experiment_by_name(f"quad-{form}")
        trials = client.search_runs([experiment.experiment_id], "tags.`orch.kind` = 'trial'")
        assert len(trials) == 2, form
        for run in trials:
            assert run.info.status == "FINISHED", (form, run.data.tags.get("orch.error"))
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, EPOCHS + 1)), form
            checkpoint = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
            assert "checkpoint/state.json" in checkpoint, (form, checkpoint)
            if form == "cmd":  # the script's own MLflow logging landed in the trial's run (MLFLOW_RUN_ID)
                steps = [m.step for m in client.get_metric_history(run.info.run_id, "script_logged")]
                assert steps == list(range(1, EPOCHS + 1)), steps
        assert {r.data.params["lr"] for r in trials} == {"0.1", "0.3"}


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"trainable": "lab.nothere:Quad"}, "trainable", "cannot import lab.nothere"),
        ({"trainable": "lab.quad:Missing"}, "trainable", "has no attribute 'Missing'"),
        ({"trainable": "lab.quad:NotATrainable"}, "trainable", "not a ray.tune.Trainable"),
        ({"trainable": "lab.quad:two_arguments"}, "trainable", "calls a function trainable with one argument"),
        ({"trainable": "lab.quad"}, "trainable", "unknown trainable 'lab.quad'"),
        (
            {"command": "python train.py --lr {lr} --epochs {epoch_count}", "trainable": None},
            "command",
            "placeholder {epoch_count} names no hyperparameter",
        ),
        ({"trainable": "lab.quad:Quad", "command": "python train.py"}, "", "exactly one"),
        ({"metrics": []}, "metrics", "declares no metrics"),
        ({"config_model": "lab.quad:QuadConfig", "defaults": {"lr": 2.0, "epochs": 3}}, "defaults.lr", "less than or equal to 1"),
        ({"config_model": "lab.quad:NotATrainable"}, "config_model", "not a pydantic model"),
    ],
)
def test_bad_trainables_are_one_line_each(tmp_path: Path, change: dict, key: str, words: str) -> None:
    lab = make_lab(tmp_path / "lab-repo")
    path = lab / "conf" / "projects" / "quad-cls.yaml"
    project = {**yaml.safe_load(path.read_text()), **change}
    write(path, {k: v for k, v in project.items() if v is not None})
    refused = run_orch(["validate", "conf/sweeps/lab-cls.yaml"], cwd=lab)
    line = assert_one_error_line(refused, "conf/projects/quad-cls.yaml", words)
    assert f": {key}: " in line or not key, line
    if key == "trainable" and "cannot import" in words:  # `orch run` checks the same way, before anything starts
        again = run_orch(["run", "conf/sweeps/lab-cls.yaml"], cwd=lab)
        assert_one_error_line(again, words)
        assert not (lab / ".orch").exists()


@pytest.mark.integration
def test_a_trainable_that_raises_in_setup_is_one_line(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab-repo")
    path = lab / "conf" / "projects" / "quad-cls.yaml"
    write(path, {**yaml.safe_load(path.read_text()), "trainable": "lab.quad:BrokenSetup"})
    ran = run_orch(["run", "conf/sweeps/lab-cls.yaml"], cwd=lab, timeout=300)
    assert_one_error_line(
        ran,
        "conf/projects/quad-cls.yaml",
        "trainable:",
        "failed in every trial before its first result",
        "KeyError: 'lr_schedule'",
    )


@pytest.mark.integration
def test_a_trial_failing_mid_run_exits_1_with_its_error_on_its_run(tmp_path: Path) -> None:
    """One of two trials diverges at epoch 2: the other finishes, the sweep's exit code is 1 (README: exit codes),
    one line says how many failed, and the failed trial's run is FAILED with its error, its first epoch kept."""
    from mlflow.tracking import MlflowClient

    lab = make_lab(tmp_path / "lab-repo", epochs=4)
    sweep = lab / "conf" / "sweeps" / "lab-fn.yaml"
    write(sweep, {**yaml.safe_load(sweep.read_text()), "search_space": {"diverge_at_epoch": {"grid": [0, 2]}}})
    ran = run_orch(["run", "conf/sweeps/lab-fn.yaml"], cwd=lab, timeout=300)
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert lines == ["error: 1 of 2 trials failed; see the MLflow runs for their errors"], ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr and "best trial" in ran.stdout, ran.stdout
    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("quad-fn").experiment_id
    runs = {r.data.params["diverge_at_epoch"]: r for r in client.search_runs([experiment], "tags.`orch.kind` = 'trial'")}
    assert runs["0"].info.status == "FINISHED" and runs["2"].info.status == "FAILED", runs
    assert "FloatingPointError: loss diverged at epoch 2" in runs["2"].data.tags["orch.error"], runs["2"].data.tags
    assert [m.step for m in client.get_metric_history(runs["2"].info.run_id, "loss")] == [1]
    parent = client.search_runs([experiment], "tags.`orch.kind` = 'sweep'")[0]
    assert parent.info.status == "FAILED"


@pytest.mark.integration
def test_a_sweep_metric_missing_from_a_result_is_one_line_and_the_runs_are_closed(tmp_path: Path) -> None:
    """The sweep's metric is one the trainable reports only now and then (an evaluation every few epochs): Ray
    Tune stops the experiment at the first result without it. One line naming the sweep file and the metric, not
    Ray's traceback, and no run left RUNNING."""
    from mlflow.tracking import MlflowClient

    lab = make_lab(tmp_path / "lab-repo")
    path = lab / "conf" / "projects" / "quad-cls.yaml"
    write(path, {**yaml.safe_load(path.read_text()), "metrics": ["loss", "started_at_epoch", "val_loss"]})
    sweep = lab / "conf" / "sweeps" / "lab-cls.yaml"
    write(sweep, {**yaml.safe_load(sweep.read_text()), "metric": "val_loss"})
    ran = run_orch(["run", "conf/sweeps/lab-cls.yaml"], cwd=lab, timeout=300)
    assert_one_error_line(ran, "conf/sweeps/lab-cls.yaml", "metric:", "has no 'val_loss'", "report it at every step")
    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("quad-cls").experiment_id])
    assert runs and {r.info.status for r in runs} == {"KILLED"}, [(r.data.tags.get("orch.kind"), r.info.status) for r in runs]


def test_a_sweep_outside_a_workspace_says_where_it_looked(tmp_path: Path) -> None:
    stray = tmp_path / "stray.yaml"
    stray.write_text("name: x\n")
    refused = run_orch(["validate", str(stray)], cwd=tmp_path)
    assert_one_error_line(refused, "not in a workspace", f"looked for {tmp_path.parent}", "orch init")
    nowhere = run_orch(["status", "--cluster", "slurm-local"], cwd=tmp_path)
    assert_one_error_line(nowhere, "no conf/ workspace here or above", str(tmp_path))


def test_the_workspace_is_found_from_a_subfolder(tmp_path: Path) -> None:
    from orchestrator.kernel.config.workspace import find_conf_root

    lab = make_lab(tmp_path / "lab-repo")
    (lab / "lab" / "deep").mkdir()
    assert find_conf_root(lab / "lab" / "deep") == (lab / "conf").resolve()
    assert find_conf_root(lab / "conf" / "sweeps") == (lab / "conf").resolve()
    assert find_conf_root(tmp_path) is None


def test_a_job_checkpoint_request_in_the_environment_does_not_stop_a_local_command(tmp_path: Path) -> None:
    """`orch run` started from a shell whose environment names a SLURM job's "checkpoint now" file that holds a
    request (a job's shell, or a test process that ran a job in-process: how CI hit it) runs its command trials
    to the end; before, the script was stopped at once and its trial waited for a requeue that never came."""
    import json
    import time

    from mlflow.tracking import MlflowClient

    lab = make_lab(tmp_path / "lab-repo", epochs=EPOCHS, lrs=(0.1,))
    request = tmp_path / "checkpoint_now.json"
    request.write_text(json.dumps({"signal": 12, "at": time.time() + 3600}))
    ran = run_orch(["run", "conf/sweeps/lab-cmd.yaml"], cwd=lab, env={"ORCH_CHECKPOINT_NOW_FILE": str(request)}, timeout=240)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("quad-cmd").experiment_id], "tags.`orch.kind` = 'trial'")
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, EPOCHS + 1))
