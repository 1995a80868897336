"""`python -m orchestrator.login COMMAND ...`: the login node's thin command-line entry.

    submit BUNDLE | status WORKDIR | logs WORKDIR SWEEP | cancel WORKDIR SWEEP | resume WORKDIR SWEEP
    | manifest BUNDLE | drill ...          the sweep service (sweeps.py) and the drill (drill.py)
    queue --profile-json JSON OP ...      the queue (queue/service.py)
    agent run|start|stop|status ...       the queue's agent (queue/agent_process.py, queue/agent_job.py)

It parses the arguments, calls the library, and writes the answer on the wire (wire.py). The laptop
runs it over ssh, directly on the login node, or inside the REST transport's submit job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from orchestrator.kernel.config.models import SlurmProfile
from orchestrator.kernel.errors import Problem, QueueError, RemoteError
from orchestrator.kernel.sweep_folder import SWEEPS_DIRNAME, Bundle
from orchestrator.login import sweeps, wire
from orchestrator.login.wire import Answer, LogsAnswer, ManifestAnswer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.login")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("submit").add_argument("bundle")
    p_status = sub.add_parser("status")
    p_status.add_argument("workdir")
    p_status.add_argument("--sweep")
    p_logs = sub.add_parser("logs")
    p_logs.add_argument("workdir")
    p_logs.add_argument("sweep")
    p_logs.add_argument("--trial")
    p_logs.add_argument("--follow", action="store_true")
    sub.add_parser("manifest").add_argument("bundle")
    p_drill = sub.add_parser("drill")
    p_drill.add_argument("--profile-json", required=True)
    p_drill.add_argument("--folder", required=True, help="the drill's folder, holding the shipped code/")
    p_drill.add_argument("--sweep-file", required=True, help="the sweep file, relative to code/")
    p_drill.add_argument("--preempt-with")
    p_resume = sub.add_parser("resume")
    p_resume.add_argument("workdir")
    p_resume.add_argument("sweep")
    p_resume.add_argument("--config-hash")
    p_resume.add_argument("--force", action="store_true")
    p_cancel = sub.add_parser("cancel")
    p_cancel.add_argument("workdir")
    p_cancel.add_argument("sweep")
    _queue_parser(sub.add_parser("queue"))
    p_agent = sub.add_parser("agent")
    p_agent.add_argument("op", choices=["run", "start", "stop", "status"])
    given = p_agent.add_mutually_exclusive_group(required=True)
    given.add_argument("--profile-json")
    given.add_argument("--profile-file", help="the profile as JSON in a file (the agent job's way)")
    p_agent.add_argument("--max-ticks", type=int)
    p_agent.add_argument("--max-seconds", type=float)
    return parser


def _queue_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile-json", required=True)
    sub = parser.add_subparsers(dest="op", required=True)
    p_add = sub.add_parser("enqueue")
    p_add.add_argument("bundle")
    p_add.add_argument("--priority", type=int, default=0)
    p_add.add_argument("--after", action="append", default=[])
    p_add.add_argument("--hold", action="store_true")
    p_add.add_argument("--config-hash", required=True)
    sub.add_parser("duplicates").add_argument("--config-hash", required=True)
    p_list = sub.add_parser("list")
    p_list.add_argument("--all", action="store_true")
    p_list.add_argument("--limit", type=int)
    for op in ("hold", "release", "cancel"):
        sub.add_parser(op).add_argument("sweep")
    p_prio = sub.add_parser("priority")
    p_prio.add_argument("sweep")
    p_prio.add_argument("value", type=int)
    p_after = sub.add_parser("after")
    p_after.add_argument("sweep")
    p_after.add_argument("deps", nargs="*")


def _queue_profile(profile_json: str) -> SlurmProfile:
    from orchestrator.kernel.config.models import profile_from_json

    profile = profile_from_json(profile_json)
    if profile.backend != "slurm" or profile.queue is None:
        raise QueueError(
            "queue", f"profile '{profile.name}' has no queue section", "add a `queue:` section to the cluster profile"
        )
    return profile


def _queue(args: argparse.Namespace) -> Answer:
    from orchestrator.login.queue import service

    profile = _queue_profile(args.profile_json)
    if args.op == "enqueue":
        return service.enqueue(profile, Path(args.bundle), args.priority, args.after, args.hold, args.config_hash)
    if args.op == "duplicates":
        return service.duplicates(profile, args.config_hash)
    if args.op == "list":
        return service.listing(profile, args.all, args.limit)
    if args.op == "cancel":
        return service.cancel(profile, args.sweep)
    if args.op == "priority":
        return service.change(profile, "priority", args.sweep, args.value)
    if args.op == "after":
        return service.change(profile, "after", args.sweep, args.deps)
    return service.change(profile, args.op, args.sweep)


def _agent(args: argparse.Namespace) -> Answer:
    from orchestrator.login.queue import agent_job, agent_process

    profile_json = args.profile_json or Path(args.profile_file).read_text()
    profile = _queue_profile(profile_json)
    if profile.queue is not None and profile.queue.agent_as_job:
        if args.op == "start":
            return agent_job.start_job(profile)
        if args.op == "stop":
            return agent_job.stop_job(profile)
        return agent_process.status(profile).model_copy(update={"jobs": agent_job.find_jobs(profile)})
    if args.op == "start":
        return agent_process.start(profile, profile_json)
    if args.op == "stop":
        return agent_process.stop(profile)
    return agent_process.status(profile)


def _run(args: argparse.Namespace) -> Answer:
    if args.command == "queue":
        return _queue(args)
    if args.command == "agent":
        return _agent(args)
    if args.command == "submit":
        return sweeps.submit(Path(args.bundle))
    if args.command == "status":
        return sweeps.status(Path(args.workdir), args.sweep)
    if args.command == "cancel":
        return sweeps.cancel(Path(args.workdir), args.sweep)
    if args.command == "drill":
        from orchestrator.kernel.config.models import profile_from_json
        from orchestrator.login.drill import run_drill

        profile = profile_from_json(args.profile_json)
        if profile.backend != "slurm":
            raise RemoteError("backend", f"profile '{profile.name}' is not a SLURM profile", "drill a SLURM profile")
        return run_drill(profile, Path(args.folder), args.sweep_file, args.preempt_with)
    if args.command == "manifest":
        if not (Path(args.bundle) / "bundle.json").exists():
            raise RemoteError("sweep", f"no sweep in {args.bundle}", "list sweeps with: orch status --cluster NAME")
        return ManifestAnswer(manifest=Bundle(Path(args.bundle)).manifest().__dict__)
    if args.command == "resume":
        return sweeps.resume(Path(args.workdir) / SWEEPS_DIRNAME / args.sweep, args.config_hash, args.force)
    files = sweeps.log_files(Path(args.workdir), args.sweep, args.trial)
    if args.follow and files:
        sys.stdout.flush()
        os.execvp("tail", ["tail", "-n", "+1", "-F", *map(str, files)])
    for path in files:
        sys.stdout.write(f"==> {path.name} <==\n{path.read_text(errors='replace')}\n")
    return LogsAnswer(files=[str(p) for p in files])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "agent" and args.op == "run":  # the agent's loop: a long-running process, not a call
        from orchestrator.login.queue import agent_process

        try:
            profile = _queue_profile(args.profile_json or Path(args.profile_file).read_text())
        except Problem as exc:
            return wire.emit_error(exc)
        return agent_process.run(profile, args.max_ticks, args.max_seconds)
    try:
        answer = _run(args)
    except Problem as exc:
        if args.command == "submit":
            _cleanup_failed_submit(Path(args.bundle))
        return wire.emit_error(exc)
    wire.emit(answer)
    return 0


def _cleanup_failed_submit(bundle_root: Path) -> None:
    """A refused submit leaves nothing behind on the cluster."""
    if (bundle_root / "bundle.json").exists() and not (bundle_root / "jobs.json").exists():
        shutil.rmtree(bundle_root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
