"""The queue's operations on the login node, a library: enqueue, list, priority, hold, release, after,
cancel. The laptop reaches them through `python -m orchestrator.login queue OP --profile-json JSON ...`.
The store is opened here, on the login node, so a SQLite queue stays on that machine's local disk.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrator.kernel.config.models import SlurmProfile
from orchestrator.kernel.states import TERMINAL, SweepState
from orchestrator.login.queue.rows import NewSweep, SweepRow
from orchestrator.login.queue.store import QueueStore
from orchestrator.login.wire import (
    AgentLease,
    CancelAnswer,
    DuplicatesAnswer,
    EnqueueAnswer,
    QueuedSweep,
    QueueListing,
    SweepChanged,
)

DEFAULT_LIMIT = 50
RECENT_S = 24 * 3600.0


def open_store(profile: SlurmProfile) -> QueueStore:
    assert profile.queue is not None
    return QueueStore(profile.queue.store)


def gpus_of(profile: SlurmProfile, shards: int | None = None) -> int:
    """GPUs a sweep holds while it runs: its job's, times the array tasks."""
    tasks = (shards or profile.slurm.shards) if profile.slurm.layout == "array" else 1
    return profile.slurm.nodes * profile.slurm.gpus_per_node * tasks


def queued(row: SweepRow) -> QueuedSweep:
    """A queue row as the wire carries it."""
    data = asdict(row)
    data["state"] = row.state.value
    data["gpu_hours"] = round(row.gpu_hours, 4)
    return QueuedSweep.model_validate(data)


# ---------------------------------------------------------------------------- operations
def enqueue(
    profile: SlurmProfile, bundle_root: Path, priority: int, after: list[str], held: bool, config_hash: str
) -> EnqueueAnswer:
    """Check the sweep and the cluster (nothing queued if either refuses), then queue it."""
    from orchestrator.kernel.sweep_folder import Bundle
    from orchestrator.login.sweeps import load_bundle_sweep, preflight

    bundle = Bundle(bundle_root)
    manifest = bundle.manifest()
    resolved = load_bundle_sweep(bundle)
    preflight(profile, manifest.sweep_id)
    store = open_store(profile)
    try:
        new = NewSweep(
            sweep_id=manifest.sweep_id,
            project=manifest.project,
            name=manifest.sweep_name,
            cluster=profile.name,
            bundle=str(bundle.root),
            priority=priority,
            gpus=gpus_of(profile),
            config_hash=config_hash,
            metric=resolved.sweep.metric,
            mode=resolved.sweep.mode,
            after=tuple(store.resolve(a) for a in after),
            held=held,
        )
        row = store.add(new)
        waiting = [r for r in store.sweeps([SweepState.QUEUED]) if r.state == SweepState.QUEUED]
        position = next((i + 1 for i, r in enumerate(waiting) if r.sweep_id == row.sweep_id), None)
    finally:
        store.close()
    return EnqueueAnswer(sweep=queued(row), position=position, queued=len(waiting))


def duplicates(profile: SlurmProfile, config_hash: str) -> DuplicatesAnswer:
    store = open_store(profile)
    try:
        return DuplicatesAnswer(duplicates=[queued(r) for r in store.duplicates(config_hash)])
    finally:
        store.close()


def listing(profile: SlurmProfile, show_all: bool, limit: int | None) -> QueueListing:
    """Waiting and active sweeps, plus those that ended in the last day (all of them with show_all)."""
    store = open_store(profile)
    try:
        active = [s for s in SweepState if s not in TERMINAL]
        rows = store.sweeps(
            None if show_all else active, limit=limit, finished_since=None if show_all else time.time() - RECENT_S
        )
        counts = store.count()
        last = store.meta(f"agent:{profile.name}:last_tick")
        holder = store.lease_holder(profile.name)
    finally:
        store.close()
    return QueueListing(
        sweeps=[queued(r) for r in rows], counts=counts, shown=len(rows), agent=AgentLease(lease_holder=holder, last_tick=last)
    )


def change(profile: SlurmProfile, op: str, ref: str, value: Any = None) -> SweepChanged:
    store = open_store(profile)
    try:
        sweep_id = store.resolve(ref)
        if op == "priority":
            row = store.set_priority(sweep_id, int(value))
        elif op == "hold":
            row = store.hold(sweep_id)
        elif op == "release":
            row = store.release(sweep_id)
        elif op == "after":
            row = store.set_after(sweep_id, [store.resolve(a) for a in value])
        else:
            raise ValueError(op)
    finally:
        store.close()
    return SweepChanged(sweep=queued(row))


def cancel(profile: SlurmProfile, ref: str) -> CancelAnswer:
    """Cancel in the queue first (so the agent never submits it again), then its jobs and runs."""
    from orchestrator.login.sweeps import cancel as cancel_on_cluster

    store = open_store(profile)
    try:
        sweep_id = store.resolve(ref)
        before = store.cancel(sweep_id)
    finally:
        store.close()
    if before.state.on_cluster and Path(before.bundle, "bundle.json").exists():
        done = cancel_on_cluster(Path(profile.remote.workdir), sweep_id)
        return CancelAnswer(
            sweep_id=sweep_id, was=before.state.value, cancelled_jobs=done.cancelled_jobs, closed_runs=done.closed_runs
        )
    return CancelAnswer(sweep_id=sweep_id, was=before.state.value, cancelled_jobs=[], closed_runs=0)
