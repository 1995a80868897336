"""The SLURM backend: how one sweep becomes submitit jobs (on the login node).

The job's shape comes from `job_spec.sweep_job` (the one profile-to-sbatch mapping); this module
hands the sweep's `SweepJob` to submitit's `SlurmExecutor`, which writes the batch script and runs
`sbatch` itself: one job (`layout: allocation`), or one job array whose task i runs shard i
(`layout: array`). Every other SLURM command goes through cluster/adaptors/slurm.py.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from typing import Any

from cluster.slurm.job_spec import setup_lines, sweep_job
from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings
from orchestrator.kernel.sweep_folder import Bundle


def job_parameters(
    settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle_root: str, shards: int | None = None
) -> dict[str, Any]:
    """Parameters for submitit's SlurmExecutor; `shards`: of a job array, each task being the same shape
    (submitit adds `--array`; array task i runs shard i)."""
    return sweep_job(settings, sweep_id, shards).submitit_parameters(setup_lines(remote, bundle_root))


# The job's Python starts with USR2 ignored, until submitit (then the job entry) installs its handler: a preemption
# or a time-limit signal in the job's first second would otherwise kill it (exit 140: FAILED, never requeued; the
# soak found it). A USR2 that arrives that early is lost, which costs nothing: SLURM still requeues a preempted job
# when its GraceTime ends, and nothing has trained yet.
STARTUP_SIGNAL_GUARD = 'trap \'\' USR2; exec "$0" "$@"'


def guarded_python(python: str = sys.executable) -> str:
    """The command submitit runs the job's Python with (its `python` parameter), USR2 ignored until handled."""
    return f"/bin/sh -c {shlex.quote(STARTUP_SIGNAL_GUARD)} {shlex.quote(python)}"


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    sbatch_script: str


def make_executor(
    settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle: Bundle, shards: int | None = None
) -> Any:
    import submitit

    executor = submitit.SlurmExecutor(
        folder=bundle.submitit_dir / "%j", max_num_timeout=settings.max_requeues, python=guarded_python()
    )
    executor.update_parameters(**job_parameters(settings, remote, sweep_id, str(bundle.root), shards))
    return executor


def submit_sweep(
    settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle: Bundle, shards: int | None = None
) -> list[SubmittedJob]:
    """One job for the sweep, or (`shards`) one job array of that many tasks; job ids in shard order."""
    from submitit.core.utils import JobPaths

    from cluster.node.job_entry import SweepJob

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
