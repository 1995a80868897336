"""The local backend: this machine acts as its own node (`orch run`). Ray kept to loopback, sized to
what the machine has; the Ray environment settings every sweep uses, here or in a SLURM job."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.kernel.config.resources import MachineResources


def detect_gpus() -> int:
    """GPUs visible to this process, without importing torch (CUDA_VISIBLE_DEVICES wins)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def machine_resources(cpus: int | str = "auto", gpus: int | str = "auto") -> MachineResources:
    return MachineResources(
        cpus=(os.cpu_count() or 1) if cpus == "auto" else int(cpus),
        gpus=detect_gpus() if gpus == "auto" else int(gpus),
    )


def quiet_ray_environment() -> None:
    """Ray settings for every sweep: no usage stats, no token files, no console output of its own."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The orchestrator draws its own progress view: keep Ray Tune's console output quiet.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def loopback_ray_environment() -> None:
    """Keep a local Ray on 127.0.0.1. Ray reads this when it is first imported, so call it
    before anything imports ray (the CLI does, first thing in `orch run`)."""
    # With clusters "disabled" Ray takes the loopback address as its node address; otherwise
    # it binds the machine's external address (`_node_ip_address` alone does not change that).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    quiet_ray_environment()


@contextmanager
def local_ray(resources: MachineResources) -> Iterator[None]:
    """A private Ray instance on loopback for the duration of one sweep."""
    loopback_ray_environment()
    import ray

    ray.init(
        num_cpus=resources.cpus,
        num_gpus=resources.gpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
    )
    # A trial's error is reported once, as one line, by the progress view; its traceback is in the trial's
    # MLflow run (logs/) and Tune's error.txt, not on this console.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        ray.shutdown()
