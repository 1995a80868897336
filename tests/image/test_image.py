"""The CPU image, on this machine (`make image-test` builds it, then runs these; `make test` leaves them out by
their marker `image`): `orch` inside the image runs a tiny sweep into MLflow, and a SLURM sweep whose profile
names `runtime: apptainer` runs its trials inside the image through a stand-in `apptainer` (tests/image/bin: the
same image through podman, with the job's binds and environment) and survives a preemption with a checkpoint
taken inside the container.

`podman run` needs, here: runc (crun refuses this machine's hybrid cgroups) and explicit rlimits within what
this process may set (the runtime's defaults are refused: no CAP_SYS_RESOURCE). PODMAN_RUN says it once."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_recovery import RECOVERY, assert_exactly_once, preempt, resumed, running_past, submit
from tests.cluster.test_slurm_sweeps import finished, profile_variant, sweep_folder, wait_for
from tests.conftest import REPO

pytestmark = pytest.mark.image  # not `integration` too: `-m integration` would select them without an image

IMAGE = os.environ.get("ORCH_IMAGE", "orch:cpu")
STANDIN = Path(__file__).parent / "bin"
TINY = REPO / "conf" / "sweeps" / "avae-tiny.yaml"


def _podman_run_args() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)  # above 32768 refused here, under the hard limit
    return ["--runtime", "runc", "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


PODMAN_RUN = _podman_run_args()


@pytest.fixture(scope="module")
def image() -> str:
    """The image's name; fails (never skips) with how to build it when it is not there."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image-test` (it installs podman and builds the image)", pytrace=False)
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.fail(f"no image {IMAGE}: build it with `make image-cpu` (or run `make image-test`)", pytrace=False)
    return IMAGE


def test_orch_inside_the_image_runs_a_tiny_sweep_into_mlflow(image: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    work = tmp_path / "work"  # a workspace: conf/ with the project and the sweep, nothing else of this checkout
    shutil.copytree(REPO / "conf" / "projects", work / "conf" / "projects")
    (work / "conf" / "sweeps").mkdir()
    shutil.copy(TINY, work / "conf" / "sweeps" / TINY.name)
    work.chmod(0o777)  # the image's user (uid 1000) writes here
    started = time.monotonic()
    done = subprocess.run(
        ["podman", "run", "--rm", "--network=host", "--shm-size=512m", *PODMAN_RUN, "--volume", f"{work}:/work",
         "--workdir", "/work", "--env", "MLFLOW_TRACKING_URI=sqlite:////work/mlflow.db",
         image, "run", "conf/sweeps/avae-tiny.yaml"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"orch run inside {image}: {elapsed:.0f} s")
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("avae")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("orch.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("orch.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [r.info for r in parents]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials), [r.info for r in trials]
    assert all("val_loss" in r.data.metrics for r in trials)


def _in_container(pid: int) -> bool:
    """The process runs in a podman container: podman sets `container=podman` in its environment."""
    try:
        return b"container=podman" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _trial_actors() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::") and b"Trainable" in title:
                pids.append(int(proc.name))
    return pids


def test_slurm_sweep_runs_in_the_image_through_apptainer_and_survives_a_preemption(
    image: str, slurm_cluster: Any, tmp_path: Path
) -> None:
    path = f"{STANDIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    profile = profile_variant(
        tmp_path,
        "slurm-local-apptainer",
        remote={
            "env": {
                "SLURM_CONF": f"{slurm_cluster.dir}/etc/slurm.conf",
                "PATH": path,
                "ORCH_STANDIN_PODMAN_ARGS": " ".join(PODMAN_RUN),
            },
            # the sqlite tracking store lives in the cluster's folder: the trials inside write to it
            "container": {"runtime": "apptainer", "image": f"docker://{image}", "binds": [str(slurm_cluster.dir)]},
        },
    )
    sweep_id, job_id = submit(slurm_cluster, profile, RECOVERY)
    running_past(slurm_cluster, sweep_id, 2, profile=profile)
    actors = _trial_actors()
    assert len(actors) == 2 and all(_in_container(pid) for pid in actors), actors
    preempt(slurm_cluster, job_id)
    resumed(slurm_cluster, sweep_id, 2)
    assert all(_in_container(pid) for pid in _trial_actors())
    state = wait_for(slurm_cluster, sweep_id, finished, 600, profile)
    assert state["jobs"][0]["state"] == "COMPLETED", state
    log = "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.out"))
    assert "got signal 12: checkpointing every running trial" in log, log[-3000:]
    assert "previous attempt: USR2 (preemption); trials checkpointed" in log, log[-3000:]
    # the image has no scontrol: the batch script, outside the container, requeued the job (job_entry.py)
    assert "orch: no scontrol here (a container): the batch script requeues job" in log, log[-3000:]
    errors = "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.err"))
    assert "orch: the job step asked for a requeue (no scontrol where it ran)" in errors, errors[-3000:]
    assert_exactly_once(slurm_cluster, sweep_id, interruptions=1)
    ledger = json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())
    assert len(ledger) >= 2, ledger
