"""The laptop side of the queue: `orch submit` into a profile's queue, `orch queue|priority|hold|
release|after|cancel` and `orch agent start|stop|status`. Every call goes to the login node
(`python -m orchestrator.login queue|agent ...`) through the profile's
transport; nothing of the queue lives or runs on the laptop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.errors import RemoteError
from orchestrator.laptop.targets.ssh import SlurmTarget, prepare_submit
from orchestrator.login.wire import AgentAnswer, Answer, DuplicatesAnswer, EnqueueAnswer, QueuedSweep

A = TypeVar("A", bound=Answer)


def service(target: SlurmTarget, model: type[A], *args: str) -> A:
    """`python -m orchestrator.login queue --profile-json JSON OP ARGS` on the login node, its answer typed."""
    return target.ask(model, ["queue", "--profile-json", target.profile.model_dump_json(), *args])


def agent(target: SlurmTarget, command: str) -> AgentAnswer:
    """`python -m orchestrator.login agent start|stop|status --profile-json JSON` on the login node."""
    return target.ask(AgentAnswer, ["agent", command, "--profile-json", target.profile.model_dump_json()], timeout_s=120)


def config_hash(resolved: ResolvedSweep, code_version: str, cluster: str) -> str:
    """Equal for the same sweep file, project file, code and cluster: a resubmit without changes."""
    digest = hashlib.sha256()
    for part in (Path(resolved.file).read_text(), Path(resolved.project_file).read_text(), code_version, cluster):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def enqueue(
    resolved: ResolvedSweep,
    target: SlurmTarget,
    tracking_uri: str,
    sweep_id: str,
    *,
    priority: int,
    after: list[str],
    hold: bool,
    confirm_duplicate: Callable[[list[QueuedSweep]], bool],
) -> tuple[EnqueueAnswer | None, list[str]]:
    """Ship the code and manifest, then queue the sweep on the login node (checked there first); None when
    it repeats an earlier sweep and the user chose not to queue it again."""
    prepared = prepare_submit(resolved, target.profile, tracking_uri, sweep_id)
    digest = config_hash(resolved, prepared.code_version, target.profile.name)
    earlier = service(target, DuplicatesAnswer, "duplicates", "--config-hash", digest).duplicates
    if earlier and not confirm_duplicate(earlier):
        return None, prepared.warnings
    try:
        target.upload(f"{prepared.remote_dir}/code", prepared.code_archive)
        target.upload(prepared.remote_dir, prepared.bundle_archive)
        args = [
            "enqueue",
            prepared.remote_dir,
            "--priority",
            str(priority),
            "--config-hash",
            digest,
            *(["--hold"] if hold else []),
            *[part for ref in after for part in ("--after", ref)],
        ]
        answer = service(target, EnqueueAnswer, *args)
    except RemoteError:
        target.remove_unsubmitted(prepared.remote_dir)  # nothing half-way: no folder without its queue entry
        raise
    return answer, prepared.warnings
