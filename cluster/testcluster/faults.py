"""Faults a test or the soak injects into a running test cluster, keeping cluster.json true: a node's slurmd
killed (its jobs' processes live on, as when a real slurmd crashes) and started again; the next job launch failing
(its node's Prolog fails: SLURM drains the node and holds the job)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from . import daemons
from .cluster import _save, load_state
from .layout import ALL_NODES, Layout, Node
from .procs import ClusterError, Daemon, is_alive


def node_named(name: str) -> Node:
    for node in ALL_NODES:
        if node.name == name:
            return node
    raise ClusterError(f"no node {name} in the test cluster")


def kill_slurmd(root: Path, node_name: str) -> int | None:
    """SIGKILL the node's slurmd (by its recorded PID) and drop its record; the pid, or None if none ran."""
    lay = Layout(root.resolve())
    state = load_state(lay.root) or {}
    record = state.get("daemons", {}).pop(f"slurmd-{node_name}", None)
    _save(lay, state)
    if not record or not is_alive(record["pid"], record["start_ticks"]):
        return None
    os.kill(record["pid"], signal.SIGKILL)
    return int(record["pid"])


def start_slurmd(root: Path, node_name: str, booted: bool = False) -> Daemon | None:
    """Start the node's slurmd again (recorded, so `down` stops it), as after a reboot when `booted`; None while
    the cluster is going down."""
    lay = Layout(root.resolve())
    state = load_state(lay.root)
    if not state or not state.get("ready"):
        return None

    def record(daemon: Daemon) -> None:
        state["daemons"][daemon.name] = daemon.to_json()
        _save(lay, state)

    return daemons.start_slurmd(lay, daemons.base_env(lay), record, node_named(node_name), booted=booted)


def fail_next_launch(root: Path, launches: int = 1) -> None:
    """The next `launches` job launches, on any node, fail in their Prolog: SLURM drains each such node and requeues
    the job held."""
    lay = Layout(root.resolve())
    for n in range(launches):
        lay.fail_next_launch(n).write_text("")


def clear_launch_failures(root: Path) -> None:
    """Launch failures asked for and not yet used: gone."""
    for marker in Layout(root.resolve()).run.glob("fail-next-launch.*"):
        marker.unlink(missing_ok=True)
