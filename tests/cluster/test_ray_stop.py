"""Stopping the Ray processes a job started: SIGTERM to their process group, a short grace for the leader, then
SIGKILL to whatever of the group is left, the leader's children included when the leader went first."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from cluster.node.ray_allocation import stop_process_group


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _group(tmp: Path, script: str) -> tuple[subprocess.Popen, int]:
    """A process group led by `sh -c script`, whose child (it ignores SIGTERM) writes its PID to a file."""
    pid_file = tmp / "child.pid"
    leader = subprocess.Popen(["sh", "-c", script.replace("PIDFILE", str(pid_file))], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    return leader, int(pid_file.read_text())


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    leader, child = _group(tmp_path, "trap '' TERM; (exec sleep 100) & echo $! > PIDFILE; while :; do sleep 0.1; done")
    stop_process_group(leader, grace_s=0.5)
    # It ignores SIGTERM: only the SIGKILL that ends the grace ends it (waiting it out would have raised TimeoutExpired).
    assert leader.returncode == -signal.SIGKILL, leader.returncode
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, "the leader's child outlived the stop"
        time.sleep(0.05)


def test_a_child_left_behind_by_a_leader_that_exits_is_killed_too(tmp_path: Path) -> None:
    leader, child = _group(tmp_path, "(trap '' TERM; exec sleep 100) & echo $! > PIDFILE; wait")
    stop_process_group(leader, grace_s=5)
    assert leader.returncode is not None
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, "a child that ignores SIGTERM outlived its leader's stop"
        time.sleep(0.05)
