"""A sweep's job is submitted held and released once submitit's bookkeeping is on disk; a submit killed in
between (sbatch answered, nothing else written) is finished by `complete_submission`: each task's pickle moved
to where its job reads it, the job's log folder made, the job released. `scontrol` is a recording fake here;
tests/queue/test_queue_slurm.py kills the agent at that moment on the real cluster."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission, JobPaths

from cluster.adaptors.slurm import SlurmClient, SlurmError
from cluster.node.job_entry import SweepJob
from cluster.node.shards import Shard, ShardPlan, write_plan
from cluster.slurm.submitit_backend import complete_submission, task_ids
from orchestrator.kernel.sweep_folder import Bundle


def _fake_scontrol(tmp: Path, exit_code: int = 0) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp}/scontrol.calls\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _dump(bundle: Bundle, job: SweepJob, name: str) -> Path:
    """Where submitit dumps a task's pickle before `sbatch`: the top of submitit/, under a random name."""
    bundle.submitit_dir.mkdir(parents=True, exist_ok=True)
    path = bundle.submitit_dir / f"{name}.pkl"
    DelayedSubmission(job).dump(path)
    return path


def test_a_killed_plain_submit_gets_its_pickle_and_log_folder_then_is_released(tmp_path: Path) -> None:
    env = _fake_scontrol(tmp_path)
    bundle = Bundle(tmp_path / "sweep")
    _dump(bundle, SweepJob(str(bundle.root)), "0f3a")
    moved = complete_submission(bundle, ["41"], env)
    paths = JobPaths(bundle.submitit_dir / "%j", job_id="41")
    assert moved == ["0f3a.pkl -> 41"]
    assert paths.submitted_pickle.exists() and paths.folder.is_dir() and not list(bundle.submitit_dir.glob("*.pkl"))
    assert DelayedSubmission.load(paths.submitted_pickle).function == SweepJob(str(bundle.root))
    assert (tmp_path / "scontrol.calls").read_text().split() == ["release", "41"]
    # Idempotent: a second agent finishing the same submit moves nothing and only releases again.
    assert complete_submission(bundle, ["41"], env) == []
    assert paths.submitted_pickle.exists()


def test_a_killed_array_submit_gives_each_task_its_own_shard(tmp_path: Path) -> None:
    env = _fake_scontrol(tmp_path)
    bundle = Bundle(tmp_path / "sweep")
    bundle.root.mkdir(parents=True)
    write_plan(bundle.shards_file, ShardPlan(seed=0, shards=tuple(Shard(i, ()) for i in range(3))))
    for shard, name in ((2, "aa"), (0, "bb"), (1, "cc")):  # names in no particular order, as uuid4 gives them
        _dump(bundle, SweepJob(str(bundle.root), shard), name)
    assert task_ids(bundle, ["77"]) == ["77_0", "77_1", "77_2"]  # squeue names a pending array by its job id
    moved = complete_submission(bundle, ["77"], env)
    assert sorted(moved) == ["aa.pkl -> 77_2", "bb.pkl -> 77_0", "cc.pkl -> 77_1"]
    for shard in range(3):
        pickle = JobPaths(bundle.submitit_dir / "%j", job_id=f"77_{shard}").submitted_pickle
        assert DelayedSubmission.load(pickle).function.shard == shard
    assert (tmp_path / "scontrol.calls").read_text().split() == ["release", "77"]


def test_a_release_slurm_refuses_is_an_error_only_when_strict(tmp_path: Path) -> None:
    client = SlurmClient(env=_fake_scontrol(tmp_path, exit_code=1))
    client.release(["5"])  # a job that was not held: no error
    with pytest.raises(SlurmError):
        client.release(["5"], strict=True)
