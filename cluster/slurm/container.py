"""How a sweep job's Python is launched on each node: guarded against an early USR2, and inside the
profile's container (`remote.container`) when it names one. submitit takes the result as its `python`
(the command before `-u -m submitit.core._submit FOLDER`) and `srun_args` (options of its one `srun`).

- `none`: `/bin/sh -c GUARD PYTHON`, the login node's own Python, as before containers.
- `apptainer`: `/bin/sh -c GUARD apptainer exec [--nv] --bind WORKDIR,... [EXTRA] IMAGE /bin/sh -c GUARD PYTHON`.
- `pyxis`: srun gets `--container-image=IMAGE --container-mounts=WORKDIR,... [EXTRA]`; Pyxis runs the task,
  `/bin/sh -c GUARD PYTHON`, inside the image.

Signals. SLURM's USR2 (time limit, preemption) goes to every process of the job step: slurmstepd signals
the step's whole process tree (its cgroup), which holds the Python inside the container too, as neither
runtime moves it to a cgroup of its own; Apptainer also forwards the signals its starter gets to the
container's process, so Python may see USR2 twice (preemption.on_signal ignores a second one while one is
pending). The guard (`trap '' USR2; exec ...`: USR2 ignored until Python installs its handler) therefore
runs INSIDE the container, right before Python; for Apptainer it also runs before `apptainer exec`, so a
USR2 in the step's first instant cannot kill the starter before it installs its forwarding. Every layer
`exec`s: no shell stays between srun and the runtime, nor between the runtime and Python.

Several nodes. submitit's single `srun` starts one task per node (ntasks_per_node 1) and each task is this
command, so every node's task runs in the container; task 0 starts the Ray head and the others the Ray
workers as child processes of that Python (cluster/node/ray_allocation.py runs `ray` from next to
sys.executable, the image's), so head and workers alike run in the image. Both runtimes share the host's
network, so Ray's ports are reached as without a container. The batch script's own lines (setup, the
teardown's `scontrol requeue`) run outside the container, on the first node. An image has no `scontrol`: after
a USR2 the job's Python asks that teardown to requeue the job instead of running submitit's `scontrol requeue`
(cluster/node/job_entry.py, requeue_through_the_batch_script).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass

from cluster.adaptors.slurm import SlurmClient
from orchestrator.kernel.config.models import ContainerSettings, RemoteSettings
from orchestrator.kernel.errors import RemoteError
from orchestrator.kernel.tracking_layout import container_tags

# The job's Python starts with USR2 ignored, until submitit (then the job entry) installs its handler: a preemption
# or a time-limit signal in the job's first second would otherwise kill it (exit 140: FAILED, never requeued; the
# soak found it). A USR2 that arrives that early is lost, which costs nothing: SLURM still requeues a preempted job
# when its GraceTime ends, and nothing has trained yet.
STARTUP_SIGNAL_GUARD = 'trap \'\' USR2; exec "$0" "$@"'

# The programs that run a runtime's images, in the order they are looked for on the login node.
APPTAINER_PROGRAMS = ("apptainer", "singularity")


def guarded(argv: list[str]) -> str:
    """`argv` as a shell command run with USR2 ignored until handled (the shell execs it: no shell stays)."""
    return f"/bin/sh -c {shlex.quote(STARTUP_SIGNAL_GUARD)} {shlex.join(argv)}"


def guarded_python(python: str = sys.executable) -> str:
    """The command submitit runs the job's Python with (its `python` parameter), USR2 ignored until handled."""
    return guarded([python])


@dataclass(frozen=True)
class Launch:
    """What submitit gets: `python` (its command for the job's Python) and `srun_args` (more srun options)."""

    python: str
    srun_args: list[str]


def binds(remote: RemoteSettings) -> list[str]:
    """The container's mounts as HOST:CONTAINER[:ro|rw] (the form both runtimes take): `remote.workdir` at its
    own path (code snapshots, sweep folders and their checkpoints live under it, and the job's paths name
    them), then the profile's own, each once."""
    mounts = [remote.workdir.rstrip("/") or "/", *remote.container.binds]
    return list(dict.fromkeys(mount if ":" in mount else f"{mount}:{mount}" for mount in mounts))


def launch(remote: RemoteSettings, host_python: str = sys.executable, apptainer: str = "apptainer") -> Launch:
    """How the job's Python runs on every node; `host_python` without a container, `apptainer` the program
    that runs Apptainer images on the cluster (`apptainer` or `singularity`)."""
    container = remote.container
    if container.runtime == "none":
        return Launch(guarded_python(host_python), [])
    mounts = ",".join(binds(remote))
    inner = ["/bin/sh", "-c", STARTUP_SIGNAL_GUARD, container.python]
    if container.runtime == "apptainer":
        options = ["exec", *(["--nv"] if container.gpu else []), "--bind", mounts, *container.extra_args]
        return Launch(guarded([apptainer, *options, str(container.image), *inner]), [])
    srun_args = [f"--container-image={container.image}", f"--container-mounts={mounts}", *container.extra_args]
    return Launch(guarded([container.python]), srun_args)


def apptainer_program(remote: RemoteSettings) -> str | None:
    """The Apptainer program on this (login) node's PATH (`remote.env`'s PATH when it sets one), or None."""
    path = remote.env.get("PATH", os.environ.get("PATH", ""))
    return next((name for name in APPTAINER_PROGRAMS if shutil.which(name, path=path)), None)


def check_runtime(remote: RemoteSettings, client: SlurmClient) -> None:
    """Refuse (RemoteError, before anything is queued) a container runtime this cluster lacks: Apptainer
    not on the login node's PATH, or an srun without Pyxis's `--container-image`."""
    runtime = remote.container.runtime
    if runtime == "apptainer" and apptainer_program(remote) is None:
        raise RemoteError(
            "remote.container.runtime",
            "apptainer runs the jobs, but neither apptainer nor singularity is on the login node's PATH",
            "install Apptainer on the cluster (or put it on PATH with remote.env), or set runtime: pyxis or none",
        )
    if runtime == "pyxis" and not client.srun_accepts("--container-image"):
        raise RemoteError(
            "remote.container.runtime",
            "pyxis runs the jobs, but this cluster's srun has no --container-image option (no Pyxis plugin)",
            "ask the site for Pyxis (srun --help lists --container-image), or set runtime: apptainer or none",
        )


def image_tags(container: ContainerSettings) -> dict[str, str]:
    """What the sweep's parent run records of its image (orchestrator/kernel/tracking_layout.py): the runtime, the
    reference, and the sha256 of the image file when it is one this node reads (a .sif or .sqsh on the shared
    filesystem; read whole, once per submit); {} without a container."""
    if container.runtime == "none" or container.image is None:
        return {}
    is_file = container.image.startswith("/") and os.path.isfile(container.image)
    return container_tags(container.runtime, container.image, _sha256(container.image) if is_file else None)


def _sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
