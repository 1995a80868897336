"""The SLURM backend: how one sweep becomes submitit jobs (on the login node).

The job's shape comes from `job_spec.sweep_job` (the one profile-to-sbatch mapping); this module
hands the sweep's `SweepJob` to submitit's `SlurmExecutor`, which writes the batch script and runs
`sbatch` itself: one job (`layout: allocation`), or one job array whose task i runs shard i
(`layout: array`). Every other SLURM command goes through cluster/adaptors/slurm.py.

The job is submitted HELD and released once submitit has written its bookkeeping (the job's folder, where
its log goes, and its pickle): a job that started before them could not open its log and would fail. A
submitter killed in between (the queue agent under SIGKILL) leaves a held job and the pickle(s) at the top
of submitit/; `complete_submission` finishes that bookkeeping and releases the job.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cluster.slurm.container import apptainer_program, launch
from cluster.slurm.job_spec import setup_lines, step_guard_lines, sweep_job
from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings
from orchestrator.kernel.sweep_folder import Bundle


def job_parameters(
    settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle_root: str, shards: int | None = None
) -> dict[str, Any]:
    """Parameters for submitit's SlurmExecutor; `shards`: of a job array, each task being the same shape
    (submitit adds `--array`; array task i runs shard i)."""
    guard_setup, guard_teardown = step_guard_lines(bundle_root, settings.max_requeues)
    parameters = sweep_job(settings, sweep_id, shards).submitit_parameters([*setup_lines(remote, bundle_root), *guard_setup])
    return {**parameters, "teardown": guard_teardown}


# Tests: the queue agent's process SIGKILLs itself at a named point; "sbatch" is the moment `sbatch` has answered,
# before submitit's bookkeeping (the agent's own points are "claimed" and "submitted").
CRASH_ENV = "ORCH_AGENT_CRASH_AT"


def _crash_after_sbatch(executor: Any) -> None:
    if os.environ.get(CRASH_ENV) != "sbatch":
        return
    parse = executor._get_job_id_from_submission_command

    def parse_then_die(output: Any) -> str:
        parse(output)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    executor._get_job_id_from_submission_command = parse_then_die


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    sbatch_script: str


def make_executor(
    settings: SlurmSettings,
    remote: RemoteSettings,
    sweep_id: str,
    bundle: Bundle,
    shards: int | None = None,
    host_python: str = sys.executable,
) -> Any:
    """submitit's executor for the sweep: the job's Python (`host_python`, or the image's in the profile's
    container; cluster/slurm/container.py) and every sbatch and srun option."""
    import submitit

    run = launch(remote, host_python, apptainer_program(remote) or "apptainer")
    executor = submitit.SlurmExecutor(folder=bundle.submitit_dir / "%j", max_num_timeout=settings.max_requeues, python=run.python)
    parameters = job_parameters(settings, remote, sweep_id, str(bundle.root), shards)
    if run.srun_args:
        parameters["srun_args"] = run.srun_args
    parameters["additional_parameters"] = {**parameters.get("additional_parameters", {}), "hold": True}
    executor.update_parameters(**parameters)
    return executor


def submit_sweep(
    settings: SlurmSettings, remote: RemoteSettings, sweep_id: str, bundle: Bundle, shards: int | None = None
) -> list[SubmittedJob]:
    """One job for the sweep, or (`shards`) one job array of that many tasks; job ids in shard order. The job is
    submitted held and released here, once submitit's bookkeeping is on disk."""
    from submitit.core.utils import JobPaths

    from cluster.adaptors.slurm import SlurmClient, SlurmError
    from cluster.node.job_entry import SweepJob

    executor = make_executor(settings, remote, sweep_id, bundle, shards)
    _crash_after_sbatch(executor)
    if shards is None:
        jobs = [executor.submit(SweepJob(str(bundle.root)))]
    else:  # ONE sbatch --array (a single shard is a plain job); each task unpickles its own SweepJob
        jobs = executor.submit_array([SweepJob(str(bundle.root), shard) for shard in range(shards)])
    submitted = []
    for job in jobs:
        # An array has one script, in the folder of its array job id (our folder is submitit/%j).
        script = JobPaths(executor.folder, job_id=job.job_id.split("_")[0]).submission_file
        submitted.append(SubmittedJob(job.job_id, script.read_text() if script.exists() else ""))
    client, ids = SlurmClient(env=remote.env), sorted({job.job_id.split("_")[0] for job in jobs})
    try:
        client.release(ids, strict=True)
    except SlurmError:  # nothing left held forever: the submit fails whole
        client.cancel(ids)
        raise
    return submitted


def complete_submission(bundle: Bundle, job_ids: Sequence[str], env: dict[str, str]) -> list[str]:
    """Finish the bookkeeping of a submit killed between `sbatch` and the release: the job's submitit folder and
    each task's pickle (moved from where submitit dumped it before `sbatch`), then release the job. Idempotent;
    the pickles it moved, as "<pickle> -> <job id>"."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    from cluster.adaptors.slurm import SlurmClient

    pattern = bundle.submitit_dir / "%j"
    job_ids = task_ids(bundle, job_ids)
    missing = [j for j in job_ids if not JobPaths(pattern, job_id=j).submitted_pickle.exists()]
    pickles = sorted(bundle.submitit_dir.glob("*.pkl")) if bundle.submitit_dir.is_dir() and missing else []
    # Each leftover pickle loaded once: the shard its SweepJob runs (an array task takes its own shard's).
    leftovers = {pickle: str(getattr(DelayedSubmission.load(pickle).function, "shard", "")) for pickle in pickles}
    moved = []
    for job_id in missing:
        _, _, task = job_id.partition("_")
        pickle = next((p for p, shard in leftovers.items() if not task or shard == task), None)
        if pickle is None:
            continue
        target = JobPaths(pattern, job_id=job_id).submitted_pickle
        target.parent.mkdir(parents=True, exist_ok=True)
        pickle.replace(target)
        del leftovers[pickle]
        moved.append(f"{pickle.name} -> {job_id}")
    for job_id in job_ids:  # the folder the job's log goes to, pickle moved or not
        JobPaths(pattern, job_id=job_id).folder.mkdir(parents=True, exist_ok=True)
    SlurmClient(env=env).release(sorted({j.split("_")[0] for j in job_ids}))
    return moved


def task_ids(bundle: Bundle, job_ids: Sequence[str]) -> list[str]:
    """The ids a submit records (jobs.json): an array job's id (as squeue names a pending array by its job name)
    becomes one id per task, `<array id>_<shard>`; a sweep of one shard is a plain job."""
    if not bundle.shards_file.exists():
        return list(job_ids)
    from cluster.node.shards import read_plan

    count = len(read_plan(bundle.shards_file).shards)
    if count == 1:
        return list(job_ids)
    return [task for j in job_ids for task in ([j] if "_" in j else [f"{j}_{i}" for i in range(count)])]
