"""Rich tables for `orch status`: one table per sweep, its SLURM jobs and its trials."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from rich.table import Table

from orchestrator.login.wire import SweepStatus


def status_tables(sweeps: Sequence[SweepStatus]) -> Iterator[Any]:
    if not sweeps:
        yield "no sweeps on this cluster yet"
        return
    for sweep in sweeps:
        jobs = ", ".join(f"{job.job_id} {job.state}" + (f" on {job.node_list}" if job.node_list else "") for job in sweep.jobs)
        age = time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.submitted_at))
        title = f"{sweep.sweep_id} ({sweep.project}, submitted {age}){' CANCELLED' if sweep.cancelled else ''}"
        released = [
            f"job {job.job_id} was held by SLURM ({job.reason}): released, it starts again on a working node"
            for job in sweep.jobs
            if job.released
        ]
        caption = "\n".join([f"jobs: {jobs or 'no jobs'}", *released])
        table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
        for column in ("trial", "state", "epoch", "metric"):
            table.add_column(column)
        for trial in sorted(sweep.trials, key=lambda t: t.trial_id):
            metric = "-" if trial.metric is None else f"{trial.metric:.4g}"
            table.add_row(trial.trial_id, trial.state, str(trial.epoch), metric)
        yield table
