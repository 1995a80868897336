"""Processes of the test cluster: start detached, record (pid, start time), check and stop by PID.

A pid is only trusted together with the start time read from /proc when it was started, so a
recycled pid is never signalled. Nothing here looks processes up by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """A step of bringing the cluster up or down failed; the message says which and why."""


@dataclass
class Daemon:
    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat: tells a recycled pid apart
    argv: list[str]
    log: str

    def to_json(self) -> dict:
        return asdict(self)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing paren
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, ticks: int | None = None) -> bool:
    """True if the process runs (a zombie counts as gone) and, if given, started at `ticks`."""
    _reap(pid)
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return ticks is None or int(fields[19]) == ticks


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: whoever adopted it reaps it


def spawn(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path) -> Daemon:
    """Start a foreground daemon in its own session, stdout/stderr to `log`; it outlives us."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    ticks = None
    for _ in range(50):  # /proc entry appears at once; be patient on a loaded machine
        ticks = start_ticks(proc.pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    proc.returncode = 0  # we never wait() on it here; silence Popen's "still running" warning
    return Daemon(name, proc.pid, ticks or 0, list(argv), str(log))


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start ticks) of every process below `pid`, e.g. sshd's per-connection children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        ticks = start_ticks(child)
        if ticks is not None:
            found.append((child, ticks))
        todo.extend(children.get(child, []))
    return found


def stop_tree(pid: int, ticks: int | None, term_timeout_s: float = 10.0) -> str:
    """Stop a process, then whatever it had started that outlived it (all by PID)."""
    below = descendants(pid) if is_alive(pid, ticks) else []
    outcome = stop(pid, ticks, term_timeout_s)
    extra = [stop(child, child_ticks, 5.0) for child, child_ticks in below]
    stopped = sum(1 for o in extra if o != "not running")
    return outcome + (f" (+{stopped} child process{'es' if stopped != 1 else ''})" if stopped else "")


def stop(pid: int, ticks: int | None, term_timeout_s: float = 10.0) -> str:
    """SIGTERM, then SIGKILL after `term_timeout_s`. Returns what happened, in a word."""
    if not is_alive(pid, ticks):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    if wait_for(lambda: not is_alive(pid, ticks), term_timeout_s, interval_s=0.05):
        return "stopped"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    wait_for(lambda: not is_alive(pid, ticks), 5.0, interval_s=0.05)
    return "killed"


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a short command (argument list, bounded in time); raise ClusterError on failure if `check`."""
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{argv[0]} did not finish in {timeout_s:.0f} s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise ClusterError(f"{argv[0]} not found: run `make slurm-deps`") from exc
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])
