"""Ray across a SLURM allocation: the head on the first node, a worker on each other node.

submitit runs the job's callable once per node (one task per node). Task 0 starts the
Ray head and drives the Tune experiment; the other tasks start Ray workers that join
it, found through a rendezvous file in the sweep folder. Every job uses its own temp
dir and free ports, so several sweeps can share a node, and Ray is stopped by the PID
of what we started (never `ray stop`, which would kill other sweeps' Ray too).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster.node.local import quiet_ray_environment
from orchestrator.kernel.files import write_atomic


@dataclass(frozen=True)
class Allocation:
    job_id: str
    attempt: int
    rank: int
    nodes: int
    cpus_per_node: int
    gpus_per_node: int

    @classmethod
    def from_environment(cls) -> Allocation:
        job_id = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "local"))
        if "SLURM_ARRAY_TASK_ID" in os.environ:
            job_id = f"{job_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return cls(
            job_id=job_id,
            attempt=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            rank=int(os.environ.get("SLURM_NODEID", os.environ.get("SLURM_PROCID", "0")) or 0),
            nodes=int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")) or 1),
            cpus_per_node=int(os.environ.get("SLURM_CPUS_ON_NODE", os.cpu_count() or 1)),
            gpus_per_node=len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]),
        )

    @property
    def key(self) -> str:
        return f"{self.job_id}.{self.attempt}"


def own_address() -> str:
    """This node's address as other nodes reach it (the source address of its default route)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # a UDP connect sends nothing; it only picks a route
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _ray_start(args: list[str], allocation: Allocation) -> subprocess.Popen:
    quiet_ray_environment()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [
            ray_bin,
            "start",
            *args,
            "--num-cpus",
            str(allocation.cpus_per_node),
            "--num-gpus",
            str(allocation.gpus_per_node),
            "--disable-usage-stats",
            "--block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_ignore_job_signal,
    )


def _ignore_job_signal() -> None:
    """SLURM's USR2 (time limit, preemption) goes to every process of the job step; its default action
    kills. Ray's daemons and workers inherit this SIG_IGN, so only the driver handles it (and asks the
    trials to checkpoint, cluster/node/preemption.py) instead of Ray dying under the running trials."""
    import signal

    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


@dataclass
class RayHead:
    """The Ray head this job started; `ready()` waits until it listens and tells the other nodes where."""

    process: subprocess.Popen
    host: str
    port: int
    rendezvous: Path

    def ready(self) -> str:
        _wait_for_port(self.host, self.port, self.process)
        address = f"{self.host}:{self.port}"
        write_atomic(self.rendezvous / "head.json", json.dumps({"address": address, "pid": self.process.pid}))
        return address


@contextmanager
def starting_ray_head(allocation: Allocation, rendezvous: Path) -> Iterator[RayHead]:
    """Start the Ray head here and yield at once: the job does its own set-up (imports, MLflow) while the
    head boots, then calls `ready()`. The head and every process it started are stopped on exit. Ray's
    worker processes inherit the head's environment: set what the trials read before this."""
    address_ip, port = own_address(), _free_port()
    # A short temp dir: Ray's unix socket paths must stay under 107 characters.
    temp_dir = f"/tmp/orch-ray-{allocation.key}-{os.getpid()}"
    head = _ray_start(
        ["--head", "--node-ip-address", address_ip, "--port", str(port), "--temp-dir", temp_dir, "--include-dashboard=false"],
        allocation,
    )
    try:
        yield RayHead(head, address_ip, port, rendezvous)
    finally:
        write_atomic(rendezvous / "done", "")
        stop_process_group(head, RAY_STOP_GRACE_S)


@contextmanager
def ray_head(allocation: Allocation, rendezvous: Path) -> Iterator[str]:
    """Start the Ray head here; yields its address once it listens. Workers find it through `rendezvous`."""
    with starting_ray_head(allocation, rendezvous) as head:
        yield head.ready()


def run_ray_worker(allocation: Allocation, rendezvous: Path, timeout_s: float = 600) -> None:
    """Join the head's Ray cluster and stay until the head says the sweep is done."""
    deadline = time.monotonic() + timeout_s
    while not (rendezvous / "head.json").exists():
        if time.monotonic() > deadline or (rendezvous / "done").exists():
            return
        time.sleep(0.5)
    address = json.loads((rendezvous / "head.json").read_text())["address"]
    worker = _ray_start(["--address", address, "--node-ip-address", own_address()], allocation)
    try:
        while not (rendezvous / "done").exists() and worker.poll() is None:
            time.sleep(1)
    finally:
        stop_process_group(worker, RAY_STOP_GRACE_S)


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Ray head exited with code {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the Ray head did not listen on {host}:{port} within {timeout_s:g} s")


# When the sweep's driver has stopped (tuner.fit returned or the attempt handed over, ray.shutdown done), nothing
# in Ray's daemons is worth waiting for, yet `ray start --block` given SIGTERM stops its children one by one and
# took ~30 s here (bench/bench_ray_stop.py): with a 20 s grace, that was most of every job's ~22 s tail
# (docs/benchmarks.md). SIGTERM, this grace, then SIGKILL to the whole group. `ray start` never exited within
# a 2 s grace either (bench/bench_ray_stop.py), so the grace is only long enough for a daemon that exits on
# SIGTERM at once to do so.
RAY_STOP_GRACE_S = 0.25


def stop_process_group(process: subprocess.Popen | None, grace_s: float = RAY_STOP_GRACE_S) -> None:
    """SIGTERM to the process group `process` leads, up to `grace_s` for the leader to exit, then SIGKILL to what is
    left of the group (the leader can exit before its children)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def wait_for_nodes(expected: int, timeout_s: float = 180) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        alive = [node for node in ray.nodes() if node.get("Alive")]
        if len(alive) >= expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(alive)} of {expected} Ray nodes joined within {timeout_s:g} s")
        time.sleep(0.5)
