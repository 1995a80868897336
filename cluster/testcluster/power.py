"""SLURM power saving on the test cluster: what slurmctld's SuspendProgram and ResumeProgram run.

`suspend HOSTLIST` stops those nodes' slurmd by PID (the node "powers off"); `resume HOSTLIST` "boots" them:
after RESUME_DELAY_S it starts their slurmd again in their namespace, and until it registers the jobs
waiting for the node are CONFIGURING. Both keep cluster.json's daemon records true, so `down` stops a
woken slurmd by PID like any other.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import daemons
from .cluster import _save, load_state
from .faults import start_slurmd
from .layout import ALL_NODES, RESUME_DELAY_S, Layout
from .procs import run, stop_tree


def _nodes(hostlist: str, env: dict[str, str]) -> list:
    names = run(["scontrol", "show", "hostnames", hostlist], env=env, timeout_s=10).stdout.split()
    return [node for node in ALL_NODES if node.name in names]


def suspend(root: Path, hostlist: str, log=print) -> None:
    lay = Layout(root.resolve())
    env = daemons.base_env(lay)
    for node in _nodes(hostlist, env):
        state = load_state(lay.root) or {}
        record = state.get("daemons", {}).pop(f"slurmd-{node.name}", None)
        if record:
            outcome = stop_tree(record["pid"], record["start_ticks"])
            log(f"{time.strftime('%H:%M:%S')} suspend {node.name}: slurmd pid {record['pid']} {outcome}")
        _save(lay, state)


# A test that must see a node booting holds its boot (`hold_boot`) until it has looked, at most this long: below
# slurm.conf's ResumeTimeout (120 s) less the boot delay, so SLURM never gives the node up.
BOOT_HOLD_MAX_S = 90.0


def _boot_hold(lay: Layout, node_name: str) -> Path:
    return lay.run / f"hold-boot-{node_name}"


def hold_boot(root: Path, node_name: str) -> None:
    """The node's next boot (resume) waits after its delay until `release_boot`, at most BOOT_HOLD_MAX_S: a test sees
    the jobs waiting for it CONFIGURING for as long as it needs, however slow the machine."""
    _boot_hold(Layout(root.resolve()), node_name).write_text("")


def release_boot(root: Path, node_name: str) -> None:
    _boot_hold(Layout(root.resolve()), node_name).unlink(missing_ok=True)


def resume(root: Path, hostlist: str, delay_s: float = RESUME_DELAY_S, log=print) -> None:
    lay = Layout(root.resolve())
    env = daemons.base_env(lay)
    nodes = _nodes(hostlist, env)
    log(f"{time.strftime('%H:%M:%S')} resume {','.join(n.name for n in nodes)}: booting for {delay_s:g} s")
    time.sleep(delay_s)
    held_until = time.monotonic() + BOOT_HOLD_MAX_S  # bound on the hold: SLURM's ResumeTimeout must not pass
    if any(_boot_hold(lay, node.name).exists() for node in nodes):
        log(f"{time.strftime('%H:%M:%S')} resume: boot held by a test")
        while any(_boot_hold(lay, node.name).exists() for node in nodes) and time.monotonic() < held_until:
            time.sleep(0.2)
    for node in nodes:
        daemon = start_slurmd(lay.root, node.name, booted=True)
        if daemon is None:
            log(f"resume {node.name}: the cluster is going down, not starting its slurmd")
            return
        log(f"{time.strftime('%H:%M:%S')} resume {node.name}: slurmd pid {daemon.pid}")


def power_down(root: Path, node_name: str, timeout_s: float = 180.0) -> None:
    """Put a node to sleep now (POWER_DOWN_FORCE) unless it is, and wait until sinfo shows it asleep (`idle~`).
    Just after jobs ran there, slurmctld can take a minute or more to suspend it."""
    from .procs import ClusterError, wait_for

    env = daemons.base_env(Layout(root.resolve()))

    def asleep() -> bool:
        return run(["sinfo", "-h", "-n", node_name, "-o", "%t"], env=env, check=False, timeout_s=10).stdout.strip() == "idle~"

    if not asleep():
        run(["scontrol", "update", f"NodeName={node_name}", "State=POWER_DOWN_FORCE"], env=env, timeout_s=15)

    if not wait_for(asleep, timeout_s, 0.5):
        state = run(["sinfo", "-h", "-n", node_name, "-o", "%t %E"], env=env, check=False, timeout_s=10).stdout.strip()
        raise ClusterError(f"node {node_name} not asleep after {timeout_s:.0f} s: {state}")
