"""`orch queue`, `orch priority|hold|release|after` and `orch agent start|stop|status`: the queue of a
SLURM profile with a `queue:` section. Light imports only (the CLI starts fast)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.kernel.errors import UsageError
from orchestrator.login.wire import QueuedSweep, QueueListing, SweepChanged

console = Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)
err_console = Console(stderr=True)

ClusterOption = typer.Option(..., "--cluster", "-c", envvar="ORCH_CLUSTER", help="SLURM cluster profile with a queue: section")
ConfOption = typer.Option(None, "--conf", help="The workspace's conf/ folder (default: found from here upward)")
STATE_STYLE = {
    "running": "green",
    "succeeded": "bold green",
    "failed": "red",
    "cancelled": "dim",
    "held": "yellow",
    "preempted": "magenta",
    "requeued": "magenta",
    "submitting": "cyan",
    "submitted": "cyan",
}


def parse_priority(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"priority '{text}' is not a number; fix: give an integer, e.g. 10 (higher starts first)") from None


def _queue_target(cluster: str, conf: Path | None) -> Any:
    from orchestrator.kernel.config.loading import find_cluster
    from orchestrator.kernel.config.models import SshSlurmProfile
    from orchestrator.kernel.errors import ConfigError
    from orchestrator.laptop.targets.ssh import SlurmTarget

    profile, path = find_cluster(cluster, conf)
    if not isinstance(profile, SshSlurmProfile) or profile.queue is None:
        raise ConfigError(
            path,
            "queue",
            f"profile '{profile.name}' has no queue (or reaches SLURM through slurmrestd)",
            "add a `queue:` section to a profile with a login node (see conf/clusters/slurm-queue-local.yaml)",
        )
    return SlurmTarget.of(profile, path)


def submit_to_queue(
    resolved: Any, target: Any, uri: str, sweep_id: str, priority: int, after: list[str], hold: bool, yes: bool
) -> None:
    from orchestrator.laptop.targets.queue import enqueue

    def confirm(earlier: list[QueuedSweep]) -> bool:
        names = ", ".join(f"{d.sweep_id} ({d.state})" for d in earlier[:3])
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                f"the same sweep file, code and cluster were queued before as {names}; "
                "fix: pass --yes to queue a duplicate, or change something"
            )
        return typer.confirm(f"the same sweep was queued before as {names}; queue a duplicate?", default=False)

    answer, warnings = enqueue(
        resolved, target, uri, sweep_id, priority=priority, after=after, hold=hold, confirm_duplicate=confirm
    )
    for warning in warnings:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False)
    if answer is None:
        console.print("not queued", highlight=False)
        raise typer.Exit(1)
    sweep = answer.sweep
    where = f"position {answer.position} of {answer.queued}" if answer.position else sweep.state
    console.print(
        f"queued sweep [bold]{sweep.sweep_id}[/] on '{target.profile.name}' with priority {sweep.priority} "
        f"({where}); the agent submits it when the policy allows",
        highlight=False,
    )
    console.print(f"follow it with: orch queue --cluster {target.profile.name}", highlight=False)


def queue(
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
    show_all: bool = typer.Option(False, "--all", help="Every sweep ever queued, not just waiting, running and recent ones"),
    limit: int = typer.Option(50, "--limit", help="Show at most this many (0: no limit)"),
    as_json: bool = typer.Option(False, "--json", help="Print the raw answer as JSON"),
) -> None:
    """List the queue: project, sweep, priority, state, trials, GPU-hours, best metric."""
    from orchestrator.laptop.targets.queue import service

    target = _queue_target(cluster, conf)
    answer = service(target, QueueListing, "list", *(["--all"] if show_all else []), *(["--limit", str(limit)] if limit else []))
    if as_json:
        console.print_json(answer.model_dump_json())
        return
    console.print(queue_table(answer))


def queue_table(answer: QueueListing) -> Table:
    summary = ", ".join(f"{n} {state}" for state, n in sorted(answer.counts.items())) or "empty"
    agent = answer.agent
    last = json.loads(agent.last_tick) if agent.last_tick else None
    agent_line = (
        f"agent {agent.lease_holder}, last tick {time.time() - last['at']:.0f} s ago"
        if agent.lease_holder and last
        else "no agent running: orch agent start --cluster NAME"
    )
    table = Table(
        title=f"queue: {summary}",
        caption=f"{agent_line}; showing {answer.shown}",
        title_justify="left",
        caption_justify="left",
    )
    for column in ("project", "sweep", "prio", "state", "trials done/run/pend", "GPU-h", "best", "why / jobs"):
        table.add_column(column, overflow="fold")
    for s in answer.sweeps:
        why = s.reason or (", ".join(s.job_ids) if s.job_ids else "") or (f"after {', '.join(s.after)}" if s.after else "")
        best = "-" if s.best_metric is None else f"{s.best_metric:.4g} ({s.metric})"
        cells = [
            s.project,
            s.sweep_id,
            str(s.priority),
            s.state,
            f"{s.trials_done}/{s.trials_running}/{s.trials_pending}",
            f"{s.gpu_hours:.2f}",
            best,
            why,
        ]
        table.add_row(*(Text(cell, style=STATE_STYLE.get(cell, "") if i == 3 else "") for i, cell in enumerate(cells)))
    return table


def priority(
    sweep: str = typer.Argument(..., help="Sweep id or name"),
    value: str = typer.Argument(..., help="New priority (an integer; higher goes first)"),
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
) -> None:
    """Change a queued sweep's priority."""
    from orchestrator.laptop.targets.queue import service

    level = parse_priority(value)
    row = service(_queue_target(cluster, conf), SweepChanged, "priority", sweep, str(level)).sweep
    console.print(f"sweep {row.sweep_id}: priority {row.priority}", highlight=False)


def hold(
    sweep: str = typer.Argument(..., help="Sweep id or name"), cluster: str = ClusterOption, conf: Path | None = ConfOption
) -> None:
    """Keep a queued sweep from starting until `orch release`."""
    from orchestrator.laptop.targets.queue import service

    row = service(_queue_target(cluster, conf), SweepChanged, "hold", sweep).sweep
    console.print(f"sweep {row.sweep_id}: {row.state}", highlight=False)


def release(
    sweep: str = typer.Argument(..., help="Sweep id or name"), cluster: str = ClusterOption, conf: Path | None = ConfOption
) -> None:
    """Let a held sweep start again."""
    from orchestrator.laptop.targets.queue import service

    row = service(_queue_target(cluster, conf), SweepChanged, "release", sweep).sweep
    console.print(f"sweep {row.sweep_id}: {row.state}", highlight=False)


def after(
    sweep: str = typer.Argument(..., help="Sweep id or name"),
    deps: list[str] | None = typer.Argument(None, help="Sweeps it waits for (none: it waits for nothing)"),
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
) -> None:
    """Make a waiting sweep start only after other sweeps succeeded."""
    from orchestrator.laptop.targets.queue import service

    row = service(_queue_target(cluster, conf), SweepChanged, "after", sweep, *(deps or [])).sweep
    console.print(f"sweep {row.sweep_id}: waits for {', '.join(row.after) or 'nothing'}", highlight=False)


COMMANDS: dict[str, Callable[..., None]] = {
    "queue": queue,
    "priority": priority,
    "hold": hold,
    "release": release,
    "after": after,
}

agent_app = typer.Typer(help="The agent on the login node that submits queued sweeps.", no_args_is_help=True)


@agent_app.command("start")
def agent_start(cluster: str = ClusterOption, conf: Path | None = ConfOption) -> None:
    """Start the agent on the login node, detached (a second start finds the running one)."""
    from orchestrator.laptop.targets.queue import agent

    answer = agent(_queue_target(cluster, conf), "start")
    state = "already running" if answer.already_running else "started"
    if answer.job_id is not None:
        console.print(f"agent {state} as SLURM job {answer.job_id} (it requeues itself)", highlight=False)
        return
    console.print(f"agent {state} on the login node (pid {answer.pid}); log: {answer.log}", highlight=False)


@agent_app.command("stop")
def agent_stop(cluster: str = ClusterOption, conf: Path | None = ConfOption) -> None:
    """Stop the agent (SIGTERM: it finishes its tick and releases its lease)."""
    from orchestrator.laptop.targets.queue import agent

    answer = agent(_queue_target(cluster, conf), "stop")
    if answer.job_ids is not None:
        console.print(
            f"agent job(s) {', '.join(answer.job_ids)} cancelled" if answer.stopped else "no agent job was queued",
            highlight=False,
        )
        return
    console.print(f"agent pid {answer.pid} stopped" if answer.stopped else "no agent was running", highlight=False)


@agent_app.command("status")
def agent_status(cluster: str = ClusterOption, conf: Path | None = ConfOption) -> None:
    """Is the agent running, who holds the lease, when did it last tick."""
    from orchestrator.laptop.targets.queue import agent

    answer = agent(_queue_target(cluster, conf), "status")
    last = answer.last_tick
    ago = f"{time.time() - last['at']:.0f} s ago ({last['own_ms']} ms of its own work)" if last else "never"
    if answer.jobs:
        where = "job " + ", ".join(f"{j.job_id} {j.state} ({j.restarts} restarts)" for j in answer.jobs)
    else:
        where = f"running, pid {answer.pid}" if answer.pid else "not running"
    console.print(f"agent: {where}; lease: {answer.lease_holder or 'free'}; last tick {ago}; log: {answer.log}", highlight=False)
