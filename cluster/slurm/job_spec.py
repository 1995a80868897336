"""What a job asks SLURM for: the one mapping from a cluster profile to sbatch options, and the
names our jobs carry. Every kind of job uses it (a sweep's jobs, the REST transport's submit job,
the queue's agent job, the drill's canary) and every way of submitting reads the same `JobSpec`:
`sbatch_args()` for the sbatch command line (preflight, agent, canary), `submitit_parameters()`
for submitit's SlurmExecutor, `rest_fields()` for slurmrestd.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings

# Job names: SLURM's own records (squeue, sacct) are matched with ours through them.
SWEEP_JOB_PREFIX = "orch."
SUBMIT_JOB_PREFIX = "orch-submit."
AGENT_JOB_PREFIX = "orch-agent."
DRILL_JOB_PREFIX = "orch-drill."


def sweep_job_name(sweep_id: str) -> str:
    return f"{SWEEP_JOB_PREFIX}{sweep_id}"


def sweep_id_of(job_name: str) -> str | None:
    """The sweep a job of ours belongs to, from its name (None: not a sweep's job)."""
    return job_name[len(SWEEP_JOB_PREFIX) :] if job_name.startswith(SWEEP_JOB_PREFIX) else None


def gres(settings: SlurmSettings, gpus: int | None = None) -> str | None:
    count = settings.gpus_per_node if gpus is None else gpus
    if count == 0:
        return None
    kind = f"{settings.gpu_type}:" if settings.gpu_type else ""
    return f"gpu:{kind}{count}"


def cpus_per_node(settings: SlurmSettings) -> int:
    if settings.cpus_per_node is not None:
        return settings.cpus_per_node
    return max(1, settings.gpus_per_node * settings.cpus_per_gpu)


def mem_mb(settings: SlurmSettings) -> int | None:
    return int(settings.gpus_per_node * settings.mem_per_gpu_gb * 1024) if settings.gpus_per_node else None


def setup_lines(remote: RemoteSettings, bundle_root: str | None) -> list[str]:
    """Shell lines run before a job: the profile's own, then our environment, all values quoted; with
    a sweep folder, its code snapshot first on PYTHONPATH (two code versions run side by side)."""
    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(remote.env.items())]
    code = [f"export PYTHONPATH={shlex.quote(f'{bundle_root}/code')}${{PYTHONPATH:+:$PYTHONPATH}}"] if bundle_root else []
    return [*remote.setup, *exports, *code, "export PYTHONUNBUFFERED=1"]


def step_guard_lines(bundle_root: str, max_requeues: int) -> tuple[list[str], list[str]]:
    """(setup, teardown) shell lines of a sweep job: the path of the file its Python touches as it starts (one per
    job and attempt), and after `srun`: a step that failed before our Python started (slurmd restarted while the
    step launched: "Job credential expired") requeues the job instead of failing it, at most `max_requeues` times
    in all; and a requeue the job's Python asked for where it has no `scontrol` (in a container: job_entry's
    requeue_through_the_batch_script) is done here, outside the container."""
    from cluster.node.job_entry import REQUEUE_REQUEST_ENV, STEP_STARTED_ENV

    folder = shlex.quote(f"{bundle_root}/submitit")
    attempt = "${SLURM_JOB_ID}.${SLURM_RESTART_COUNT:-0}"
    setup = [
        f"export {STEP_STARTED_ENV}={folder}/step-started.{attempt}",
        f"export {REQUEUE_REQUEST_ENV}={folder}/requeue.{attempt}",
    ]
    teardown = [
        "status=$?",
        f'if [ -e "${REQUEUE_REQUEST_ENV}" ]; then',
        '    echo "orch: the job step asked for a requeue (no scontrol where it ran): requeueing job $SLURM_JOB_ID" >&2',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        f'if [ "$status" -ne 0 ] && [ ! -e "${STEP_STARTED_ENV}" ] && [ "${{SLURM_RESTART_COUNT:-0}}" -lt {int(max_requeues)} ]; then',
        '    echo "orch: the job step never started (exit $status): requeueing job $SLURM_JOB_ID" >&2',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
    ]
    return setup, teardown


@dataclass(frozen=True)
class JobSpec:
    """One job's request to SLURM, whatever submits it."""

    name: str
    partition: str
    time_min: int
    nodes: int = 1
    cpus_per_task: int = 1
    gres: str | None = None
    mem_mb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_lead_s: int | None = None  # USR2 this long before the end (time limit, preemption)
    requeue: bool = False
    comment: str | None = None
    output: str | None = None  # appended to, never truncated (a requeued job keeps its log)

    def sbatch_args(self) -> list[str]:
        """The sbatch command-line options (one task per node)."""
        args = [
            "--job-name",
            self.name,
            "--partition",
            self.partition,
            "--time",
            str(self.time_min),
            "--nodes",
            str(self.nodes),
            "--ntasks-per-node",
            "1",
            "--cpus-per-task",
            str(self.cpus_per_task),
        ]
        for flag, value in (
            ("--gres", self.gres),
            ("--account", self.account),
            ("--qos", self.qos),
            ("--constraint", self.constraint),
            ("--comment", self.comment),
            ("--output", self.output),
        ):
            if value is not None:
                args += [flag, value]
        if self.mem_mb is not None:
            args += ["--mem", f"{self.mem_mb}M"]
        if self.signal_lead_s is not None:
            args.append(f"--signal=USR2@{self.signal_lead_s}")
        if self.requeue:
            args.append("--requeue")
        if self.output is not None:
            args.append("--open-mode=append")
        return args

    def submitit_parameters(self, setup: list[str]) -> dict[str, Any]:
        """Parameters for submitit's SlurmExecutor (it writes the script: --open-mode=append and --output itself)."""
        params: dict[str, Any] = {
            "job_name": self.name,
            "partition": self.partition,
            "time": self.time_min,
            "nodes": self.nodes,
            "ntasks_per_node": 1,  # one task per node: task 0 drives Tune, the others are Ray workers
            "cpus_per_task": self.cpus_per_task,
            "setup": setup,
            "additional_parameters": {"requeue": True} if self.requeue else {},
        }
        if self.signal_lead_s is not None:
            params["signal_delay_s"] = self.signal_lead_s
        optional = {
            "comment": self.comment,
            "gres": self.gres,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
        }
        params.update({key: value for key, value in optional.items() if value is not None})
        if self.mem_mb is not None:
            params["mem"] = f"{self.mem_mb}M"
        return params

    def rest_fields(self, environment: dict[str, str]) -> dict[str, Any]:
        """The `job` object of a slurmrestd submit request (API v0.0.38)."""
        fields: dict[str, Any] = {
            "name": self.name,
            "partition": self.partition,
            "time_limit": self.time_min,
            "tasks": self.nodes,
            "cpus_per_task": self.cpus_per_task,
            "current_working_directory": "/tmp",
            "standard_output": self.output or "/dev/null",
            "standard_error": self.output or "/dev/null",
            "environment": environment,
        }
        optional = {"comment": self.comment, "account": self.account, "qos": self.qos, "constraint": self.constraint}
        fields.update({key: value for key, value in optional.items() if value is not None})
        if self.requeue:
            fields["requeue"] = True
        return fields


def sweep_job(settings: SlurmSettings, sweep_id: str, shards: int | None = None) -> JobSpec:
    """The job of a sweep (one per array task with `shards`): every node's GPUs, CPUs and memory, the
    signal before its end, requeued by SLURM on preemption."""
    return JobSpec(
        name=sweep_job_name(sweep_id),
        partition=settings.partition,
        time_min=settings.time_limit_min,
        nodes=settings.nodes,
        cpus_per_task=cpus_per_node(settings),
        gres=gres(settings),
        mem_mb=mem_mb(settings),
        account=settings.account,
        qos=settings.qos,
        constraint=settings.constraint,
        signal_lead_s=settings.signal_lead_s,
        requeue=True,
        comment=f"orch-sweep={sweep_id}" + (f" orch-shards={shards}" if shards is not None else ""),
    )


def small_job(
    settings: SlurmSettings,
    name: str,
    time_min: int,
    *,
    partition: str | None = None,
    gpus: int = 0,
    mem_mb: int | None = None,
    comment: str | None = None,
    output: str | None = None,
    signal_lead_s: int | None = None,
    requeue: bool = False,
) -> JobSpec:
    """A one-task helper job in the profile's account and QoS: the REST submit job, the agent job, the drill's canary."""
    return JobSpec(
        name=name,
        partition=partition or settings.partition,
        time_min=time_min,
        cpus_per_task=1,
        gres=gres(settings, gpus) if gpus else None,
        mem_mb=mem_mb,
        account=settings.account,
        qos=settings.qos,
        constraint=settings.constraint if gpus else None,
        signal_lead_s=signal_lead_s,
        requeue=requeue,
        comment=comment,
        output=output,
    )


def refused_key(message: str) -> str:
    """The profile key a refusal from SLURM points at (`slurm.partition`, `slurm.gpus_per_node`, ...)."""
    lowered = message.lower()
    if "partition" in lowered:
        return "slurm.partition"
    if "time limit" in lowered:
        return "slurm.time_limit_min"
    if "gres" in lowered or "node configuration" in lowered or "gpu" in lowered:
        return "slurm.gpus_per_node"
    if "account" in lowered:
        return "slurm.account"
    if "qos" in lowered:
        return "slurm.qos"
    return "slurm"
