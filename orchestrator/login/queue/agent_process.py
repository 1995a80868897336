"""The agent as a process on the login node: `run` (the loop), and `start` (detached, idempotent),
`stop` and `status`, all found through a pid file on the login node's local disk.

`python -m orchestrator.login agent run|start|stop|status --profile-json JSON`
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.kernel.config.models import SlurmProfile
from orchestrator.kernel.files import write_atomic
from orchestrator.login.wire import AgentAnswer

STOP_TIMEOUT_S = 30.0


def _dir(profile: SlurmProfile) -> Path:
    assert profile.queue is not None
    folder = Path(os.path.expanduser(profile.queue.agent_dir))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pid_file(profile: SlurmProfile) -> Path:
    return _dir(profile) / f"agent-{profile.name}.json"


def log_file(profile: SlurmProfile) -> Path:
    return _dir(profile) / f"agent-{profile.name}.log"


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def running_pid(profile: SlurmProfile) -> int | None:
    """The pid of this profile's agent when it is alive (same pid AND same start time)."""
    try:
        record = json.loads(pid_file(profile).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    pid = int(record["pid"])
    return pid if _start_ticks(pid) == record["start_ticks"] else None


def start(profile: SlurmProfile, profile_json: str) -> AgentAnswer:
    """Start the agent detached (own session, log file) unless it already runs: idempotent."""
    lock_path = _dir(profile) / f"agent-{profile.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two starts at once: the second finds the first
        pid = running_pid(profile)
        if pid is not None:
            return AgentAnswer(pid=pid, already_running=True, log=str(log_file(profile)))
        with open(log_file(profile), "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.login", "agent", "run", "--profile-json", profile_json],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        ticks = None
        for _ in range(100):  # /proc entry appears at once; bounded anyway
            ticks = _start_ticks(child.pid)
            if ticks is not None:
                break
            time.sleep(0.01)
        write_atomic(pid_file(profile), json.dumps({"pid": child.pid, "start_ticks": ticks, "started_at": time.time()}))
    return AgentAnswer(pid=child.pid, already_running=False, log=str(log_file(profile)))


def stop(profile: SlurmProfile) -> AgentAnswer:
    pid = running_pid(profile)
    if pid is None:
        return AgentAnswer(stopped=False, pid=None)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _start_ticks(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if _start_ticks(pid) is not None:
        os.kill(pid, signal.SIGKILL)
    return AgentAnswer(stopped=True, pid=pid)


def status(profile: SlurmProfile) -> AgentAnswer:
    from orchestrator.login.queue.service import open_store

    store = open_store(profile)
    try:
        last = store.meta(f"agent:{profile.name}:last_tick")
        holder = store.lease_holder(profile.name)
    finally:
        store.close()
    return AgentAnswer(
        pid=running_pid(profile), lease_holder=holder, last_tick=json.loads(last) if last else None, log=str(log_file(profile))
    )


def run(profile: SlurmProfile, max_ticks: int | None = None, max_seconds: float | None = None) -> int:
    """The loop: one tick every queue.tick_s until SIGTERM or `max_seconds` (the lease is released on the way out)."""
    from orchestrator.login.queue.agent import Agent, holder_name
    from orchestrator.login.queue.service import open_store
    from orchestrator.login.queue.slurm_port import SlurmPort

    assert profile.queue is not None
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    store = open_store(profile)
    holder = holder_name()
    agent = Agent(store, SlurmPort(profile.remote.env), profile.queue, profile.name, holder)
    print(f"{_now()} agent {holder} for '{profile.name}' on {store.backend}, tick {profile.queue.tick_s:g} s", flush=True)
    ticks = 0
    ends_at = time.monotonic() + max_seconds if max_seconds else float("inf")
    try:
        while not stopping and (max_ticks is None or ticks < max_ticks) and time.monotonic() < ends_at:
            report = agent.tick()
            ticks += 1
            store.set_meta(
                f"agent:{profile.name}:last_tick",
                json.dumps(
                    {
                        "at": time.time(),
                        "holder": holder,
                        "own_ms": round(report.own_s * 1000, 1),
                        "cluster_calls": report.cluster_calls,
                        "skipped": report.skipped,
                    }
                ),
            )
            if report.submitted or report.resubmitted or report.reconciled or report.changed or report.skipped:
                print(
                    f"{_now()} submitted {report.submitted} resubmitted {report.resubmitted} reconciled {report.reconciled} "
                    f"state changes {report.changed} own {report.own_s * 1000:.0f} ms, {report.cluster_calls} cluster call(s)"
                    + (f"; skipped: {report.skipped}" if report.skipped else ""),
                    flush=True,
                )
            deadline = time.monotonic() + profile.queue.tick_s
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, profile.queue.tick_s))
    finally:
        store.release_lease(profile.name, holder)
        store.close()
        print(f"{_now()} agent {holder} stopped", flush=True)
    return 0


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
