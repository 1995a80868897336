"""The agent as a small self-requeuing CPU SLURM job (queue.agent_as_job), for clusters that kill
long processes on the login node.

The job runs the agent loop for `agent_job_run_s`, then `scontrol requeue`s itself, so the agent
lives on in pieces that each fit the time limit. Two pieces never overlap (one job), and the
store's lease keeps a job agent and a login-node agent from ever working at once. The store must
be reachable from compute nodes: PostgreSQL (SQLite is refused: it lives on the login node's disk).
Every sbatch option is an argument (no #SBATCH lines built from profile values); the script's
only values are shell-quoted.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from cluster.adaptors.slurm import SlurmClient, SlurmError
from cluster.slurm.job_spec import AGENT_JOB_PREFIX, JobSpec, setup_lines, small_job
from orchestrator.kernel.config.models import SlurmProfile
from orchestrator.kernel.errors import RemoteError
from orchestrator.kernel.files import write_atomic
from orchestrator.login.wire import AgentAnswer, AgentJob

REQUEUE_MARGIN_S = 120
AGENT_JOB_MEM_MB = 1024


def agent_job_name(profile: SlurmProfile) -> str:
    return f"{AGENT_JOB_PREFIX}{profile.name}"


def agent_folder(profile: SlurmProfile) -> Path:
    """On the shared filesystem: the job's profile file and its log."""
    return Path(profile.remote.workdir) / "agent"


def run_seconds(profile: SlurmProfile) -> int:
    assert profile.queue is not None
    return profile.queue.agent_job_run_s or max(30, profile.queue.agent_job_time_min * 60 - REQUEUE_MARGIN_S)


def job_spec(profile: SlurmProfile, log: Path) -> JobSpec:
    """One CPU, requeued by SLURM and by itself, its log appended across pieces."""
    assert profile.queue is not None
    return small_job(
        profile.slurm,
        agent_job_name(profile),
        profile.queue.agent_job_time_min,
        partition=profile.queue.agent_job_partition,
        mem_mb=AGENT_JOB_MEM_MB,
        comment=f"orch-agent={profile.name}",
        output=str(log),
        requeue=True,
    )


def job_script(profile: SlurmProfile, profile_file: Path) -> str:
    python = shlex.quote(profile.remote.python)
    lines = [
        "#!/bin/bash",
        f"# orch agent for cluster profile {profile.name}: runs {run_seconds(profile)} s, then requeues itself",
        *setup_lines(profile.remote, None),
        'echo "== agent job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}, on $(hostname) at $(date -Is)"',
        f"{python} -m orchestrator.login agent run --profile-file {shlex.quote(str(profile_file))} "
        f"--max-seconds {run_seconds(profile)}",
        'echo "== agent job $SLURM_JOB_ID requeues itself at $(date -Is)"',
        'scontrol requeue "$SLURM_JOB_ID"',
        "",
    ]
    return "\n".join(lines)


def find_jobs(profile: SlurmProfile) -> list[AgentJob]:
    """The agent job(s) SLURM knows, pending or running (one squeue call)."""
    jobs = SlurmClient(env=profile.remote.env).queue_snapshot(agent_job_name(profile))
    return [
        AgentJob(job_id=j.job_id, state=j.state.value, restarts=j.restarts)
        for j in jobs
        if j.name == agent_job_name(profile) and not j.state.is_ended
    ]


def start_job(profile: SlurmProfile) -> AgentAnswer:
    """Submit the agent job unless one is pending or running (idempotent)."""
    assert profile.queue is not None
    if not profile.queue.store.startswith("postgresql"):
        raise RemoteError(
            "queue.agent_as_job",
            "an agent job runs on a compute node, which cannot reach a SQLite queue on the login node's disk",
            "use a PostgreSQL store (queue.store: postgresql://...) for agent_as_job",
        )
    running = find_jobs(profile)
    if running:
        return AgentAnswer(job_id=running[0].job_id, already_running=True, state=running[0].state)
    folder = agent_folder(profile)
    folder.mkdir(parents=True, exist_ok=True)
    profile_file = folder / f"{profile.name}.json"
    write_atomic(profile_file, profile.model_dump_json(), mode=0o600)  # it holds the store URL (with its password)
    script = folder / f"{profile.name}.sh"
    write_atomic(script, job_script(profile, profile_file))
    log = folder / f"{profile.name}.log"
    try:
        job_id = SlurmClient(env=profile.remote.env).submit(job_spec(profile, log).sbatch_args(), str(script))
    except SlurmError as exc:
        raise RemoteError(
            "queue.agent_job_partition",
            f"sbatch refused the agent job: {exc.message[-300:]}",
            "set queue.agent_job_partition to a partition that takes CPU jobs",
        ) from None
    return AgentAnswer(job_id=job_id, already_running=False, log=str(log))


def stop_job(profile: SlurmProfile) -> AgentAnswer:
    jobs = [j.job_id for j in find_jobs(profile)]
    SlurmClient(env=profile.remote.env).cancel(jobs)
    return AgentAnswer(stopped=bool(jobs), job_ids=jobs)
