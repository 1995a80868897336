"""The agent as a self-requeuing CPU SLURM job, against the real local cluster and a real PostgreSQL
server that the node namespaces reach (SQLite is refused for it)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.kernel.config.models import parse_profile
from orchestrator.kernel.states import SweepState
from orchestrator.login.queue.agent_job import job_script, job_spec
from orchestrator.login.queue.store import QueueStore
from tests.conftest import assert_one_error_line
from tests.harness.postgres import PostgresServer
from tests.queue.test_queue_slurm import SWEEPS, make_profile, orch

JOB_PG_PORT = 6931  # on the node network too; the session's postgres_url server has a free loopback port


def test_job_script_and_sbatch_argv_keep_values_inert(tmp_path: Path) -> None:
    hostile = "x'; touch /tmp/PWNED; echo '"
    profile = parse_profile(
        {
            "name": "c",
            "backend": "slurm",
            "remote": {"workdir": f"/w/{hostile}", "python": f"/py {hostile}", "env": {"K": hostile}},
            "slurm": {"partition": f"p #SBATCH --x {hostile}"},
            "queue": {"store": "postgresql://u@h/db", "agent_as_job": True},
        }
    )
    script = job_script(profile, Path(f"/w/{hostile}/agent/c.json"))
    (tmp_path / "job.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sh")], capture_output=True).returncode == 0
    assert "#SBATCH" not in script  # every option is an sbatch argument
    argv = job_spec(profile, tmp_path / "log").sbatch_args()
    assert argv[argv.index("--partition") + 1] == f"p #SBATCH --x {hostile}" and "--requeue" in argv


@pytest.mark.integration
def test_agent_job_runs_the_queue_and_requeues_itself(slurm_cluster: Any, tmp_path: Path) -> None:
    sqlite_profile = make_profile(tmp_path / "sqlite", "queue-job-sqlite", agent_as_job=True)
    assert_one_error_line(
        orch(slurm_cluster, "agent", "start", "--cluster", str(sqlite_profile)), "queue.agent_as_job", "PostgreSQL"
    )

    hosts = tuple(node["host_address"] for node in slurm_cluster.nodes)
    server = PostgresServer.start(tmp_path / "pg", port=JOB_PG_PORT, listen=hosts, allow_networks=("10.77.0.0/16",))
    url = server.url.replace("127.0.0.1", hosts[0])  # the address jobs in the node namespaces reach
    try:
        profile = make_profile(tmp_path, "queue-job", store=url, agent_as_job=True, agent_job_time_min=3, agent_job_run_s=15)
        queued = orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(profile))
        assert queued.returncode == 0, queued.stdout + queued.stderr
        sweep_id = queued.stdout.split("queued sweep ", 1)[1].split()[0]
        started = orch(slurm_cluster, "agent", "start", "--cluster", str(profile))
        assert started.returncode == 0 and "as SLURM job" in started.stdout, started.stdout + started.stderr
        job_id = started.stdout.split("as SLURM job ", 1)[1].split()[0]
        again = orch(slurm_cluster, "agent", "start", "--cluster", str(profile))
        assert again.returncode == 0 and f"already running as SLURM job {job_id}" in again.stdout, again.stdout
        store = QueueStore(url)
        agent_log = Path(slurm_cluster.dir) / "remote" / "agent" / "queue-job.log"
        deadline = time.monotonic() + 300
        try:
            # Until the sweep succeeded AND the agent job, having requeued itself, runs again (its log says restart 1):
            # SLURM's restart count alone turns 1 while the requeued job still waits for a node.
            while store.get(sweep_id).state != SweepState.SUCCEEDED or "restart 1" not in agent_log.read_text():
                assert time.monotonic() < deadline, (store.get(sweep_id), agent_log.read_text()[-3000:])
                time.sleep(2)
            holder = store.meta("agent:queue-job:last_tick")
        finally:
            store.close()
        assert holder and '"skipped": null' in holder, holder  # the job agent held the lease and ticked
        lines = slurm_cluster.run(
            ["sacct", "--noheader", "--allocations", "--duplicates", "--jobs", job_id, "--format=NodeList", "--parsable2"]
        ).stdout.splitlines()
        # One record per attempt; the attempt requeued and waiting right now has no node yet ("None assigned").
        nodes = [line.strip() for line in lines if line.strip() and line.strip() != "None assigned"]
        assert nodes and set(nodes) <= set(slurm_cluster.node_names), lines  # it ran on compute nodes, not the login node
        log = agent_log.read_text()
        assert "requeues itself" in log and "restart 1" in log, log[-2000:]
        stopped = orch(slurm_cluster, "agent", "stop", "--cluster", str(profile))
        assert stopped.returncode == 0 and f"agent job(s) {job_id} cancelled" in stopped.stdout, stopped.stdout + stopped.stderr
    finally:
        slurm_cluster.run(["scancel", "--name", "orch-agent.queue-job"], check=False)
        server.stop()
