"""The SLURM backend: how one sweep becomes submitit jobs (on the login node).

`job_parameters` is the whole mapping from a cluster profile to sbatch parameters;
`submit_sweep` hands the sweep's `SweepJob` to submitit's `SlurmExecutor`: one job
(`layout: allocation`), or one job array whose task i runs shard i (`layout: array`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from cluster.bundle import Bundle
from orchestrator.config.models import RemoteSettings, SlurmSettings

JOB_NAME_PREFIX = "orch"


def job_name(sweep_id: str) -> str:
    """SLURM job name carrying our sweep id, so SLURM's own records can be matched with ours."""
    return f"{JOB_NAME_PREFIX}.{sweep_id}"


def gres(settings: SlurmSettings) -> str | None:
    if settings.gpus_per_node == 0:
        return None
    kind = f"{settings.gpu_type}:" if settings.gpu_type else ""
    return f"gpu:{kind}{settings.gpus_per_node}"


def cpus_per_node(settings: SlurmSettings) -> int:
    if settings.cpus_per_node is not None:
        return settings.cpus_per_node
    return max(1, settings.gpus_per_node * settings.cpus_per_gpu)


def mem_gb(settings: SlurmSettings) -> float | None:
    return settings.gpus_per_node * settings.mem_per_gpu_gb if settings.gpus_per_node else None


def setup_lines(remote: RemoteSettings, bundle_root: str) -> list[str]:
    """Shell lines run before the job: the profile's own, then our environment, all values quoted."""
    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(remote.env.items())]
    code = shlex.quote(f"{bundle_root}/code")
    return [*remote.setup, *exports, f"export PYTHONPATH={code}${{PYTHONPATH:+:$PYTHONPATH}}",
            "export PYTHONUNBUFFERED=1"]


def job_parameters(settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle_root: str,
                   shards: int | None = None) -> dict[str, Any]:
    """Parameters for submitit's SlurmExecutor (sbatch flags without the dashes); `shards`: of a job array,
    each task being the same shape (submitit adds `--array`; array task i runs shard i)."""
    params: dict[str, Any] = {
        "job_name": job_name(sweep_id),
        "comment": f"orch-sweep={sweep_id}" + (f" orch-shards={shards}" if shards is not None else ""),
        "partition": settings.partition,
        "time": settings.time_limit_min,
        "nodes": settings.nodes,
        "ntasks_per_node": 1,  # one task per node: task 0 drives Tune, the others are Ray workers
        "cpus_per_task": cpus_per_node(settings),
        "signal_delay_s": settings.signal_lead_s,
        "setup": setup_lines(remote, bundle_root),
        "additional_parameters": {"requeue": True},
    }
    optional = {"gres": gres(settings), "account": settings.account, "qos": settings.qos, "constraint": settings.constraint}
    params.update({key: value for key, value in optional.items() if value is not None})
    memory = mem_gb(settings)
    if memory is not None:
        params["mem"] = f"{int(memory * 1024)}M"
    return params


def preflight_args(settings: SlurmSettings) -> list[str]:
    """The same shape as the real job, for `sbatch --test-only`."""
    args = ["--partition", settings.partition, "--time", str(settings.time_limit_min), "--nodes", str(settings.nodes),
            "--ntasks-per-node", "1", "--cpus-per-task", str(cpus_per_node(settings))]
    for flag, value in (("--gres", gres(settings)), ("--account", settings.account), ("--qos", settings.qos),
                        ("--constraint", settings.constraint)):
        if value is not None:
            args += [flag, value]
    memory = mem_gb(settings)
    if memory is not None:
        args += ["--mem", f"{int(memory * 1024)}M"]
    return args


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    sbatch_script: str


def make_executor(settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle: Bundle,
                  shards: int | None = None) -> Any:
    import submitit

    executor = submitit.SlurmExecutor(folder=bundle.submitit_dir / "%j", max_num_timeout=settings.max_requeues)
    executor.update_parameters(**job_parameters(settings, remote, sweep_id, str(bundle.root), shards))
    return executor


def submit_sweep(settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle: Bundle,
                 shards: int | None = None) -> list[SubmittedJob]:
    """One job for the sweep, or (`shards`) one job array of that many tasks; job ids in shard order."""
    from submitit.core.utils import JobPaths

    from cluster.job_entry import SweepJob

    executor = make_executor(settings, remote, sweep_id, bundle, shards)
    if shards is None:
        jobs = [executor.submit(SweepJob(str(bundle.root)))]
    else:  # ONE sbatch --array (a single shard is a plain job); each task unpickles its own SweepJob
        jobs = executor.submit_array([SweepJob(str(bundle.root), shard) for shard in range(shards)])
    submitted = []
    for job in jobs:
        # An array has one script, in the folder of its array job id (our folder is submitit/%j).
        script = JobPaths(executor.folder, job_id=job.job_id.split("_")[0]).submission_file
        submitted.append(SubmittedJob(job.job_id, script.read_text() if script.exists() else ""))
    return submitted
