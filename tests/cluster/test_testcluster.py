"""Real checks against the local SLURM test cluster: nodes, GPUs, multi-node, sacct, preemption, ssh, submitit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster.testcluster import SlurmCluster

pytestmark = pytest.mark.integration

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def sbatch(cluster: SlurmCluster, cwd: Path, *args: str) -> str:
    done = cluster.run(["sbatch", "--parsable", f"--chdir={cwd}", f"--output={cwd}/slurm-%j.out", *args], cwd=cwd)
    return done.stdout.strip().split(";")[0]


def job_fields(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """`scontrol show job -o` as a dict (empty when SLURM no longer knows the job)."""
    done = cluster.run(["scontrol", "show", "job", "-o", job_id], check=False)
    return dict(tok.split("=", 1) for tok in done.stdout.split() if "=" in tok) if done.returncode == 0 else {}


def wait_job(cluster: SlurmCluster, job_id: str, until, timeout_s: float = 30.0, interval_s: float = 0.1) -> dict:
    """Poll the job until `until(fields)` is true; fail with its last record after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    fields: dict = {}
    while time.monotonic() < deadline:
        fields = job_fields(cluster, job_id)
        if fields and until(fields):
            return fields
        time.sleep(interval_s)
    pytest.fail(f"job {job_id}: condition not met after {timeout_s} s; last record: {fields}")


def finished(cluster: SlurmCluster, job_id: str, timeout_s: float = 30.0) -> dict:
    fields = wait_job(cluster, job_id, lambda f: f.get("JobState") in TERMINAL, timeout_s)
    assert fields["JobState"] == "COMPLETED", fields
    return fields


def node_address(cluster: SlurmCluster, name: str) -> str:
    return next(n["address"] for n in cluster.nodes if n["name"] == name)


def test_nodes_idle_in_both_partitions(slurm_cluster: SlurmCluster) -> None:
    want = {(node, part) for node in ("n1", "n2") for part in ("low*", "high")}  # `*`: default partition
    states: dict = {}
    deadline = time.monotonic() + 30  # a reused cluster may still be finishing an earlier session's jobs
    while time.monotonic() < deadline:
        out = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %P %t"]).stdout.split("\n")
        states = {tuple(line.split()[:2]): line.split()[2] for line in out if line.strip()}
        if all(states.get(key) == "idle" for key in want):
            return
        time.sleep(0.2)
    pytest.fail(f"nodes not idle in both partitions: {states}")


def test_gpu_job_sees_its_gpus_and_node_address(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    t0 = time.monotonic()
    job = sbatch(
        slurm_cluster,
        tmp_path,
        "--gres=gpu:2",
        "-p",
        "low",
        "--wrap",
        "echo $CUDA_VISIBLE_DEVICES $SLURM_JOB_GPUS; hostname -I; sleep 1",
    )
    running = wait_job(slurm_cluster, job, lambda f: f["JobState"] != "PENDING", interval_s=0.02)
    print(f"submit->running {time.monotonic() - t0:.2f} s")
    assert running["JobState"] in {"RUNNING", "COMPLETING", "COMPLETED"}, running
    fields = finished(slurm_cluster, job)
    words = (tmp_path / f"slurm-{job}.out").read_text().split()
    assert words[:2] == ["0,1", "0,1"]
    assert words[2] == node_address(slurm_cluster, fields["NodeList"])


def test_two_node_job_runs_one_task_per_node(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = sbatch(slurm_cluster, tmp_path, "-N", "2", "--wrap", "srun bash -c 'echo $SLURMD_NODENAME $(hostname -I)'")
    finished(slurm_cluster, job)
    lines = sorted((tmp_path / f"slurm-{job}.out").read_text().split("\n"))
    pairs = [line.split() for line in lines if line.strip()]
    assert pairs == [["n1", node_address(slurm_cluster, "n1")], ["n2", node_address(slurm_cluster, "n2")]]


def test_sacct_records_completed_job_with_gpu(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = sbatch(slurm_cluster, tmp_path, "--gres=gpu:1", "--wrap", "true")
    finished(slurm_cluster, job)
    deadline = time.monotonic() + 20
    row: dict = {}
    while time.monotonic() < deadline:  # slurmctld hands records to slurmdbd asynchronously
        out = slurm_cluster.run(["sacct", "-j", job, "-X", "--parsable2", "-o", "JobID,State,AllocTRES,Account"]).stdout
        lines = out.strip().split("\n")
        row = dict(zip(lines[0].split("|"), lines[1].split("|"))) if len(lines) > 1 else {}
        if row.get("State") == "COMPLETED":
            break
        time.sleep(0.2)
    assert row.get("State") == "COMPLETED", row
    assert "gres/gpu=1" in row["AllocTRES"]
    assert row["Account"] == slurm_cluster.account


def test_high_job_preempts_and_requeues_low_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # A batch-only script: SLURM sends it SIGTERM when the partition's GraceTime (30 s) is over and
    # requeues it. (With `srun` inside, the step gets SIGTERM at once, the script exits 143 and the
    # job ends FAILED without being requeued: job scripts must not exit on that signal.)
    low = sbatch(slurm_cluster, tmp_path, "-p", "low", "--gres=gpu:1", "--open-mode=append", "--wrap", "sleep 120")
    wait_job(slurm_cluster, low, lambda f: f["JobState"] == "RUNNING")
    high = sbatch(slurm_cluster, tmp_path, "-p", "high", "-N", "2", "--exclusive", "--wrap", "sleep 2")
    try:
        t0 = time.monotonic()
        requeued = wait_job(slurm_cluster, low, lambda f: int(f.get("Restarts", "0")) >= 1, timeout_s=60)
        print(f"preempted and requeued after {time.monotonic() - t0:.1f} s")
        assert requeued["JobState"] in {"PENDING", "REQUEUED", "PREEMPTED", "COMPLETING", "CONFIGURING", "RUNNING"}, requeued
        wait_job(slurm_cluster, high, lambda f: f["JobState"] in {"RUNNING", "COMPLETED"}, timeout_s=30)
        # once the high job is done the low one runs again (skip SLURM's requeue delay)
        finished(slurm_cluster, high)
        slurm_cluster.run(["scontrol", "update", f"JobId={low}", "StartTime=now"], check=False)
        again = wait_job(slurm_cluster, low, lambda f: f["JobState"] == "RUNNING", timeout_s=30)
        assert int(again["Restarts"]) >= 1
    finally:
        slurm_cluster.run(["scancel", low, high], check=False)


def test_login_node_over_ssh(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    ssh = slurm_cluster.ssh_argv
    conf = slurm_cluster.run(ssh("printenv", "SLURM_CONF"), timeout_s=20).stdout.strip()
    assert conf == str(slurm_cluster.slurm_conf)
    sinfo = slurm_cluster.run(ssh("sinfo", "-h", "-o", "%P"), timeout_s=20).stdout.split()
    assert {"low*", "high"} <= set(sinfo)
    job = slurm_cluster.run(
        ssh("sbatch", "--parsable", f"--chdir={tmp_path}", "--wrap", "'sleep 60'"), timeout_s=20
    ).stdout.strip()
    try:
        queue = slurm_cluster.run(ssh("squeue", "-h", "-o", "%i"), timeout_s=20).stdout.split()
        assert job in queue
    finally:
        slurm_cluster.run(ssh("scancel", job), timeout_s=20, check=False)


def _where_am_i() -> tuple[str, str, str]:
    import os
    import subprocess

    addr = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.strip()
    return os.environ.get("CUDA_VISIBLE_DEVICES", ""), os.environ.get("SLURMD_NODENAME", ""), addr


def test_submitit_job_returns_its_result(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition="low", slurm_gres="gpu:1", timeout_min=5)
    job = executor.submit(_where_am_i)
    deadline = time.monotonic() + 60
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.done(), f"submitit job {job.job_id} not done after 60 s: {job.state}"
    gpus, node, addr = job.result()
    assert gpus == "0"
    assert addr == node_address(slurm_cluster, node)
