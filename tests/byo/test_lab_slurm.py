"""A lab's own project on the real local SLURM cluster: `orch submit` ships the lab's repository (not this
one), each form (a plain Ray Tune class, a function trainable, a train.py command) is preempted once and
finishes in the same MLflow run with every step logged once, resuming from its checkpoint; a trainable the
cluster's Python cannot import is refused before anything is queued."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.test_slurm_sweeps import PROFILE, orch_env, sweep_folder
from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import FORMS, make_lab, write

pytestmark = pytest.mark.integration

EPOCHS = 30  # each node is preempted once its jobs train: a job is ~27 epochs from its end when preempted
STEP_S = 1.0


def _lab(root: Path) -> Path:
    return make_lab(root, epochs=EPOCHS, step_s=STEP_S, lrs=(0.2,), profiles={"slurm": yaml.safe_load(PROFILE.read_text())})


def _orch(cluster: Any, lab: Path, *args: str, timeout: float = 180) -> Any:
    return run_orch(list(args), cwd=lab, env=orch_env(cluster), timeout=timeout)


def _status(cluster: Any, lab: Path, sweep_id: str) -> dict[str, Any]:
    done = _orch(cluster, lab, "status", sweep_id, "--cluster", "slurm", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[0]


def _wait(cluster: Any, lab: Path, sweep_ids: dict[str, str], ready: Any, what: str, timeout_s: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = {form: _status(cluster, lab, sweep_id) for form, sweep_id in sweep_ids.items()}
        if all(ready(state) for state in states.values()):
            return states
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_s:g} s: {json.dumps(states)[:3000]}"
        for sweep_id in sweep_ids.values():  # a requeued job may start at once (no need to wait out SLURM's delay)
            for job in json.loads((sweep_folder(cluster, sweep_id) / "jobs.json").read_text()):
                cluster.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
        time.sleep(3)


def _training(state: dict[str, Any]) -> bool:
    jobs, trials = state["jobs"], state["trials"]
    return bool(jobs) and jobs[-1]["state"] == "RUNNING" and len(trials) == 1 and int(trials[0].get("epoch") or 0) >= 3


def _ended(state: dict[str, Any]) -> bool:
    return bool(state["jobs"]) and all(job["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for job in state["jobs"])


def _preempt_each_node_once_training(cluster: Any, lab: Path, sweep_ids: dict[str, str], timeout_s: float = 420) -> None:
    """Each node our jobs run on, as soon as a job there trains (epoch 3 or more) that was not yet preempted, gets a
    high-partition job needing all its GPUs: SLURM preempts (requeues) ours there. Node by node, so that a job
    which started early is preempted mid-training however far apart the three started (a node powering up delays
    one)."""
    job_of = {form: json.loads((sweep_folder(cluster, sid) / "jobs.json").read_text())[0] for form, sid in sweep_ids.items()}
    preempted: set[str] = set()  # the forms whose job a high-partition job has preempted
    highs: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(preempted) < len(job_of):
        assert time.monotonic() < deadline, f"not every form was preempted while training: only {sorted(preempted)}"
        states = {form: _status(cluster, lab, sweep_id) for form, sweep_id in sweep_ids.items()}
        node_of = {
            form: cluster.run(["squeue", "--noheader", "--jobs", job, "--format=%N"], check=False).stdout.strip()
            for form, job in job_of.items()
            if form not in preempted
        }
        for node in sorted({node for node in node_of.values() if node}):
            training = [form for form, at in node_of.items() if at == node and _training(states[form])]
            if training:  # a job there still starting is requeued too; it is counted once preempted training
                highs.append(cluster.fill_node_with_high_job(node, 3))
                preempted.update(training)
        for job in job_of.values():  # a requeued job may start at once (no need to wait out SLURM's delay)
            cluster.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
        time.sleep(2)
    for high in highs:
        while cluster.run(["squeue", "--noheader", "--jobs", high, "--format=%T"], check=False).stdout.strip() not in (
            "",
            "COMPLETED",
        ):
            assert time.monotonic() < deadline, "the high-partition job never ran"
            time.sleep(1)


def test_each_form_is_preempted_and_finishes_in_the_same_run(slurm_cluster: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    lab = _lab(tmp_path / "lab-repo")
    sweep_ids = {}
    for form in FORMS:
        done = _orch(slurm_cluster, lab, "submit", f"conf/sweeps/lab-{form}.yaml", "--cluster", "slurm")
        assert done.returncode == 0, done.stdout + done.stderr
        sweep_ids[form] = done.stdout.split("submitted sweep ", 1)[1].split()[0]
    _preempt_each_node_once_training(slurm_cluster, lab, sweep_ids)
    states = _wait(slurm_cluster, lab, sweep_ids, _ended, "every sweep's end", timeout_s=600)

    client = MlflowClient(f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    for form, sweep_id in sweep_ids.items():
        assert [job["state"] for job in states[form]["jobs"]] == ["COMPLETED"], (form, states[form])
        attempts = json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())
        assert len(attempts) >= 2, (form, "the job was not requeued", attempts)
        runs = client.search_runs(
            [client.get_experiment_by_name(f"quad-{form}").experiment_id], f"tags.`orch.sweep_id` = '{sweep_id}'"
        )
        parents = [r for r in runs if r.data.tags["orch.kind"] == "sweep"]
        trials = [r for r in runs if r.data.tags["orch.kind"] == "trial"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED", form
        assert len(trials) == 1, (form, "one run per trial, never a new one after the requeue")
        run = trials[0]
        assert run.info.status == "FINISHED" and run.data.tags.get("orch.resumed") == "true", (form, run.data.tags)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert steps == list(range(1, EPOCHS + 1)), (form, "every step once", steps)
        started = [m.value for m in client.get_metric_history(run.info.run_id, "started_at_epoch")] if form != "cls" else []
        if form != "cls":  # the function and the script resumed from their own checkpoint, not from scratch
            assert max(started) > 0, (form, started)
        redone = [m.value for m in client.get_metric_history(run.info.run_id, "orch_redone_steps")]
        assert redone and max(redone) <= 2, (form, "checkpointed on SLURM's signal, or every epoch", redone)
        if form == "cmd":  # the script logged to its own trial's run, through MLFLOW_RUN_ID
            assert {int(m.step) for m in client.get_metric_history(run.info.run_id, "script_logged")} == set(range(1, EPOCHS + 1))


def test_a_trainable_the_cluster_cannot_import_is_refused_before_queueing(slurm_cluster: Any, tmp_path: Path) -> None:
    lab = _lab(tmp_path / "lab-repo")
    (lab / "lab" / "extra.py").write_text("from lab.quad import Quad as Extra\n")  # never `git add`ed: not shipped
    path = lab / "conf" / "projects" / "quad-cls.yaml"
    write(path, {**yaml.safe_load(path.read_text()), "trainable": "lab.extra:Extra"})
    from tests.harness.lab_workspace import git

    git(lab, "add", "conf")
    git(lab, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", "use lab.extra")
    assert _orch(slurm_cluster, lab, "validate", "conf/sweeps/lab-cls.yaml").returncode == 0  # it imports here
    before = set(slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split())
    sweeps = Path(slurm_cluster.dir) / "remote" / "sweeps"
    folders = set(sweeps.glob("*")) if sweeps.exists() else set()
    refused = _orch(slurm_cluster, lab, "submit", "conf/sweeps/lab-cls.yaml", "--cluster", "slurm")
    assert_one_error_line(refused, "trainable", "cannot import lab.extra")
    assert set(sweeps.glob("*")) == folders, "a refused submit left a sweep folder behind"
    assert set(slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split()) <= before
