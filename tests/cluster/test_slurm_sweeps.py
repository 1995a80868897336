"""Sweeps through the real local SLURM cluster, from the 'laptop' through the ssh login node:
submit, trials on fake-GPU nodes, MLflow runs, status, logs, cancel, a 2-node Ray cluster,
and bad input that must queue nothing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, assert_one_error_line, run_orch

pytestmark = pytest.mark.integration

TINY = REPO / "conf" / "sweeps" / "avae-slurm-tiny.yaml"
LONG = REPO / "conf" / "sweeps" / "avae-slurm-long.yaml"
WIDE = REPO / "conf" / "sweeps" / "avae-slurm-wide.yaml"
PROFILE = REPO / "conf" / "clusters" / "slurm-local.yaml"


def orch_env(cluster: Any) -> dict[str, str]:
    return {"ORCH_SLURM_DIR": str(cluster.dir), "ORCH_PYTHON": sys.executable}


def profile_variant(tmp_path: Path, name: str, **changes: Any) -> Path:
    """A copy of slurm-local with some sections changed (e.g. slurm={'nodes': 2})."""
    data = yaml.safe_load(PROFILE.read_text())
    for section, values in changes.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    data["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def submit(cluster: Any, sweep: Path, profile: str | Path = "slurm-local") -> str:
    result = run_orch(["submit", str(sweep), "--cluster", str(profile)], cwd=REPO, env=orch_env(cluster), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split("submitted sweep ", 1)[1].split()[0]


def status(cluster: Any, sweep_id: str, profile: str | Path = "slurm-local") -> dict[str, Any]:
    result = run_orch(["status", sweep_id, "--cluster", str(profile), "--json"], cwd=REPO, env=orch_env(cluster), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)[0]


def wait_for(
    cluster: Any, sweep_id: str, done: Any, timeout_s: float = 420, profile: str | Path = "slurm-local"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s  # bound on the wait, not a verdict
    while True:
        state = status(cluster, sweep_id, profile)
        if done(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"sweep {sweep_id} did not get there in {timeout_s:g} s: {json.dumps(state)[:2000]}")
        time.sleep(3)


def finished(state: dict[str, Any]) -> bool:
    return bool(state["jobs"]) and all(job["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for job in state["jobs"])


def sweep_folder(cluster: Any, sweep_id: str) -> Path:
    return Path(cluster.dir) / "remote" / "sweeps" / sweep_id


def trial_results(cluster: Any, sweep_id: str) -> dict[str, dict[str, Any]]:
    """The last Tune result of every trial, read from the shared filesystem."""
    results = {}
    for path in (sweep_folder(cluster, sweep_id) / "ray_results" / sweep_id).glob("*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        results[path.parent.name] = json.loads(lines[-1])
    return results


def mlflow_runs(cluster: Any, sweep_id: str, tracking_uri: str | None = None) -> tuple[Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri or f"sqlite:///{cluster.dir}/mlflow.db")
    experiment = client.get_experiment_by_name("avae")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`orch.sweep_id` = '{sweep_id}'")
    parents = [r for r in runs if r.data.tags.get("orch.kind") == "sweep"]
    assert len(parents) == 1
    return parents[0], [r for r in runs if r.data.tags.get("orch.kind") == "trial"]


@pytest.fixture(scope="module")
def two_sweeps(slurm_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-node sweep and a two-node sweep, submitted together and run to the end."""
    tmp = tmp_path_factory.mktemp("profiles")
    two_nodes = profile_variant(tmp, "slurm-local-2n", slurm={"nodes": 2, "gpus_per_node": 1, "cpus_per_gpu": 2})
    one = submit(slurm_cluster, TINY)
    # On two nodes with 2 CPUs each, trials that need 2 CPUs can only run one per node.
    two = submit(slurm_cluster, WIDE, two_nodes)
    states = {sweep: wait_for(slurm_cluster, sweep, finished) for sweep in (one, two)}
    return {"one": one, "two": two, "states": states}


def test_submit_runs_trials_on_fake_gpu_nodes(slurm_cluster: Any, two_sweeps: dict[str, Any]) -> None:
    state = two_sweeps["states"][two_sweeps["one"]]
    assert [job["state"] for job in state["jobs"]] == ["COMPLETED"]
    assert sorted(t["state"] for t in state["trials"]) == ["TERMINATED", "TERMINATED"]
    results = trial_results(slurm_cluster, two_sweeps["one"])
    assert len(results) == 2
    # One fake GPU per trial, each trial its own, as SLURM + Ray hand them out.
    assert sorted(r["cuda_visible_devices"] for r in results.values()) == ["0", "1"]
    assert all(r["node_ip"].startswith("10.77.") for r in results.values())
    job_id = state["jobs"][0]["job_id"]
    sacct = slurm_cluster.run(
        ["sacct", "-j", job_id, "--parsable2", "--noheader", "--allocations", "--format=JobName,State,AllocTRES"]
    ).stdout
    assert f"orch.{two_sweeps['one']}|COMPLETED|" in sacct and "gres/gpu=2" in sacct


def test_trials_are_tracked_in_mlflow(slurm_cluster: Any, two_sweeps: dict[str, Any]) -> None:
    parent, children = mlflow_runs(slurm_cluster, two_sweeps["one"])
    assert parent.info.status == "FINISHED"
    assert len(children) == 2
    job_id = two_sweeps["states"][two_sweeps["one"]]["jobs"][0]["job_id"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["orch.slurm_job_id"] == job_id
        assert "val_loss" in child.data.metrics and child.data.params["epochs"] == "2"
        assert child.data.tags["orch.node_ip"].startswith("10.77.") and child.data.tags["orch.cuda_visible_devices"] in ("0", "1")
    # The parent and every trial carry one tag set (kernel/tracking_layout.sweep_tags), as a local run's do.
    commit = parent.data.tags["mlflow.source.git.commit"]
    assert commit == parent.data.tags["orch.git_commit"] and len(commit) == 40
    for child in children:
        shared = {
            k: child.data.tags[k]
            for k in (
                "orch.sweep_id",
                "orch.project",
                "orch.trainable",
                "orch.cluster",
                "orch.git_commit",
                "mlflow.source.git.commit",
            )
        }
        assert shared == {k: parent.data.tags[k] for k in shared}
    assert parent.data.params["max_concurrent_trials"] == "2" and parent.data.params["search_algorithm"] == "random"


def test_two_node_allocation_runs_one_ray_cluster(slurm_cluster: Any, two_sweeps: dict[str, Any]) -> None:
    state = two_sweeps["states"][two_sweeps["two"]]
    assert [job["state"] for job in state["jobs"]] == ["COMPLETED"]
    assert state["jobs"][0]["node_list"] == "n[1-2]"
    results = trial_results(slurm_cluster, two_sweeps["two"])
    # Each trial needs all the CPUs Ray has on one node: one ran on each node of the allocation.
    assert sorted(r["node_ip"] for r in results.values()) == ["10.77.1.2", "10.77.2.2"]


def test_status_and_logs(slurm_cluster: Any, two_sweeps: dict[str, Any]) -> None:
    sweep_id = two_sweeps["one"]
    env = orch_env(slurm_cluster)
    table = run_orch(["status", "--cluster", "slurm-local"], cwd=REPO, env=env)
    assert table.returncode == 0 and sweep_id in table.stdout and "TERMINATED" in table.stdout and "COMPLETED" in table.stdout
    job_log = run_orch(["logs", sweep_id, "--cluster", "slurm-local"], cwd=REPO, env=env)
    assert job_log.returncode == 0 and "submitit INFO" in job_log.stdout
    trial_id = sorted(trial_results(slurm_cluster, sweep_id))[0]
    trial_log = run_orch(["logs", sweep_id, trial_id, "--cluster", "slurm-local"], cwd=REPO, env=env)
    assert trial_log.returncode == 0 and "==> stdout <==" in trial_log.stdout, trial_log.stdout + trial_log.stderr
    missing = run_orch(["logs", sweep_id, "nope", "--cluster", "slurm-local"], cwd=REPO, env=env)
    assert missing.returncode == 2 and "no trial 'nope'" in missing.stderr


def test_cancel_stops_jobs_and_closes_runs(slurm_cluster: Any, two_sweeps: dict[str, Any]) -> None:
    sweep_id = submit(slurm_cluster, LONG)
    wait_for(slurm_cluster, sweep_id, lambda s: any(t["state"] == "RUNNING" and t["epoch"] >= 1 for t in s["trials"]), 240)
    result = run_orch(["cancel", sweep_id, "--cluster", "slurm-local"], cwd=REPO, env=orch_env(slurm_cluster))
    assert result.returncode == 0, result.stderr
    state = wait_for(slurm_cluster, sweep_id, finished, 120)
    assert [job["state"] for job in state["jobs"]] == ["CANCELLED"] and state["cancelled"]
    parent, children = mlflow_runs(slurm_cluster, sweep_id)
    assert parent.info.status == "KILLED"
    assert children and all(child.info.status == "KILLED" for child in children)


BAD_PROFILES = [
    (
        "unreachable-login",
        {"login": {"host": "127.0.0.1", "port": 1, "ssh_config": None, "control_persist_s": 0}},
        "login",
        "cannot reach the login node",
    ),
    ("missing-python", {"remote": {"python": "/nonexistent/python3"}}, "remote.python", "not found"),
    ("bad-partition", {"slurm": {"partition": "nope"}}, "slurm.partition", "invalid partition"),
    ("too-long", {"slurm": {"time_limit_min": 100000}}, "slurm.time_limit_min", "time limit"),
    ("too-many-gpus", {"slurm": {"gpus_per_node": 8}}, "slurm.gpus_per_node", "refuses this job"),
    # The local cluster has neither Apptainer on the login node's PATH nor the Pyxis plugin in srun.
    (
        "no-apptainer",
        {"remote": {"container": {"runtime": "apptainer", "image": "/nonexistent/orch.sif"}}},
        "remote.container.runtime",
        "neither apptainer nor singularity",
    ),
    (
        "no-pyxis",
        {"remote": {"container": {"runtime": "pyxis", "image": "/nonexistent/orch.sqsh"}}},
        "remote.container.runtime",
        "no --container-image option",
    ),
]


@pytest.mark.parametrize(("case", "changes", "key", "words"), BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES])
def test_bad_profiles_queue_nothing(slurm_cluster: Any, tmp_path: Path, case: str, changes: dict, key: str, words: str) -> None:
    profile = profile_variant(tmp_path, f"bad-{case}", **changes)
    sweeps = Path(slurm_cluster.dir) / "remote" / "sweeps"
    before = set(sweeps.glob("*")) if sweeps.exists() else set()
    queued_before = slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split()
    result = run_orch(["submit", str(TINY), "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=180)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fix:" in lines[0], result.stderr
    assert str(profile) in lines[0] and key in lines[0] and words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    after = set(sweeps.glob("*")) if sweeps.exists() else set()
    assert after == before, "a refused submit left a sweep folder behind"
    # nothing new was queued (a job of an earlier test may have ended meanwhile)
    assert set(slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split()) <= set(queued_before)


def test_refused_key(slurm_cluster: Any, tmp_path: Path) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = slurm_cluster.ssh
    profile = profile_variant(
        tmp_path,
        "bad-key",
        login={
            "host": "127.0.0.1",
            "port": int(ssh.get("port", 2222)),
            "user": "root",
            "identity_file": str(key),
            "ssh_config": None,
            "control_persist_s": 0,
            "options": {"UserKnownHostsFile": str(tmp_path / "known_hosts"), "StrictHostKeyChecking": "accept-new"},
        },
    )
    result = run_orch(["submit", str(TINY), "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=120)
    assert result.returncode == 2 and "refused our key" in result.stderr and "identity_file" in result.stderr, result.stderr


def test_changed_host_key_is_one_line(slurm_cluster: Any, tmp_path: Path) -> None:
    """The login node's host key is not the one this laptop knows (a reinstalled node, or a man in the middle)."""
    import subprocess

    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    port = int(slurm_cluster.ssh.get("port", 2222))
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    ssh = slurm_cluster.ssh
    profile = profile_variant(
        tmp_path,
        "changed-host-key",
        login={
            "host": "127.0.0.1",
            "port": port,
            "user": "root",
            "identity_file": ssh["key"],
            "ssh_config": None,
            "control_persist_s": 0,
            "options": {"UserKnownHostsFile": str(tmp_path / "known_hosts"), "StrictHostKeyChecking": "yes"},
        },
    )
    sweeps = Path(slurm_cluster.dir) / "remote" / "sweeps"
    before = set(sweeps.glob("*")) if sweeps.exists() else set()
    result = run_orch(["submit", str(TINY), "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=120)
    line = assert_one_error_line(result, "host key verification failed", "accept the host key")
    assert str(profile) in line, line
    assert (set(sweeps.glob("*")) if sweeps.exists() else set()) == before  # nothing shipped, nothing queued


def test_remote_python_without_the_project_is_one_line(slurm_cluster: Any, tmp_path: Path) -> None:
    """remote.python names a Python that exists on the login node but has none of this project's packages."""
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    bare = str(tmp_path / "bare" / "bin" / "python")
    profile = profile_variant(tmp_path, "bare-python", remote={"python": bare})
    result = run_orch(["submit", str(TINY), "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=120)
    assert_one_error_line(result, "remote.python", bare, "lacks this project's dependencies", "install them")
    missing = profile_variant(tmp_path, "no-python", remote={"python": str(tmp_path / "nowhere" / "python")})
    result = run_orch(["submit", str(TINY), "--cluster", str(missing)], cwd=REPO, env=orch_env(slurm_cluster), timeout=120)
    assert_one_error_line(result, "remote.python", "not found on", "set remote.python")


# ---------------------------------------------------------------------------- layout: array
ARRAY = REPO / "conf" / "sweeps" / "avae-slurm-array.yaml"


def test_array_layout_runs_shards_as_array_tasks(slurm_cluster: Any, tmp_path: Path) -> None:
    """4 trials, `layout: array, shards: 2`: one job array of 2 tasks, each running its shard's 2 trials."""
    # untracked_files: include, so that a working tree with new modules ships them too
    profile = profile_variant(
        tmp_path,
        "slurm-local-array",
        slurm={"layout": "array", "shards": 2, "gpus_per_node": 1},
        remote={"untracked_files": "include"},
    )
    sweep_id = submit(slurm_cluster, ARRAY, profile)
    folder = sweep_folder(slurm_cluster, sweep_id)
    plan = json.loads((folder / "shards.json").read_text())
    assert [[t["trial_id"] for t in s["trials"]] for s in plan["shards"]] == [["t0000", "t0002"], ["t0001", "t0003"]]
    state = wait_for(slurm_cluster, sweep_id, finished)

    job_ids = [job["job_id"] for job in state["jobs"]]
    base = job_ids[0].split("_")[0]
    assert job_ids == [f"{base}_0", f"{base}_1"] and [job["state"] for job in state["jobs"]] == ["COMPLETED", "COMPLETED"]
    sacct = slurm_cluster.run(
        ["sacct", "-j", base, "--parsable2", "--noheader", "--allocations", "--format=JobID,JobName,State,AllocTRES"]
    ).stdout
    tasks = {line.split("|")[0]: line.split("|") for line in sacct.splitlines() if line.strip()}
    assert sorted(tasks) == job_ids and all(t[1] == f"orch.{sweep_id}" and t[2] == "COMPLETED" for t in tasks.values())
    assert all("gres/gpu=1" in t[3] for t in tasks.values())
    # status shows every trial, with its shard and array task
    trials = {t["trial_id"]: t for t in state["trials"]}
    assert sorted(trials) == ["t0000", "t0001", "t0002", "t0003"]
    assert all(t["state"] == "TERMINATED" and t["epoch"] == 2 for t in trials.values())
    assert {tid: (t["shard"], t["job_id"]) for tid, t in trials.items()} == {
        "t0000": (0, job_ids[0]),
        "t0001": (1, job_ids[1]),
        "t0002": (0, job_ids[0]),
        "t0003": (1, job_ids[1]),
    }
    # each task ran its own experiment, restorable after a requeue, with trial folders named by stable id
    for shard, expected in ((0, ["t0000", "t0002"]), (1, ["t0001", "t0003"])):
        experiment = folder / "ray_results" / f"{sweep_id}-s{shard}"
        assert sorted(p.name for p in experiment.iterdir() if p.is_dir()) == expected
    # MLflow: one parent, 4 children with the real hyperparameters and the stable trial ids
    parent, children = mlflow_runs(slurm_cluster, sweep_id)
    assert parent.info.status == "FINISHED" and parent.data.params["slurm_shards"] == "2"
    assert sorted(c.data.tags["orch.trial_id"] for c in children) == ["t0000", "t0001", "t0002", "t0003"]
    configs = {t["trial_id"]: t for s in plan["shards"] for t in s["trials"]}
    for child in children:
        trial = configs[child.data.tags["orch.trial_id"]]
        assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"avae-slurm-array/{trial['trial_id']}"
        assert not any(key.startswith("orch_trial") for key in child.data.params)
        assert child.data.params["lr"] == str(trial["config"]["lr"]) and child.data.params["latent_dim"] == str(
            trial["sampled"]["latent_dim"]
        )
        assert child.data.params["batch_size"] == "64" and child.data.params["epochs"] == "2"
        assert (
            child.data.tags["orch.slurm_array_task"] == trials[trial["trial_id"]]["job_id"] and "val_loss" in child.data.metrics
        )
    # logs of a trial are found in its shard's experiment
    env = orch_env(slurm_cluster)
    trial_log = run_orch(["logs", sweep_id, "t0003", "--cluster", str(profile)], cwd=REPO, env=env)
    assert trial_log.returncode == 0 and "==> stdout <==" in trial_log.stdout, trial_log.stdout + trial_log.stderr


def test_array_layout_cancel_covers_every_task(slurm_cluster: Any, tmp_path: Path) -> None:
    profile = profile_variant(
        tmp_path,
        "slurm-local-array-cancel",
        slurm={"layout": "array", "shards": 2, "gpus_per_node": 1},
        remote={"untracked_files": "include"},
    )
    sweep_id = submit(slurm_cluster, ARRAY, profile)
    wait_for(slurm_cluster, sweep_id, lambda s: all(job["state"] == "RUNNING" for job in s["jobs"]), 120)
    result = run_orch(["cancel", sweep_id, "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster))
    assert result.returncode == 0, result.stderr
    state = wait_for(slurm_cluster, sweep_id, finished, 120)
    assert [job["state"] for job in state["jobs"]] == ["CANCELLED", "CANCELLED"] and state["cancelled"]
    parent, children = mlflow_runs(slurm_cluster, sweep_id)
    assert parent.info.status == "KILLED" and all(child.info.status in ("KILLED", "FINISHED") for child in children)
