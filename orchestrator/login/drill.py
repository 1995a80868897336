"""`orch drill` on the login node: a canary job tells what this cluster does when it preempts.

It submits a short canary job (cluster/node/drill_canary.py) shaped like the profile's jobs but with one
GPU at most, in the profile's partition, with `--signal=USR2@lead` and `--requeue`. Once the canary
has timed a checkpoint of the sweep's trainable, the drill signals it (`scancel --full --signal=USR2`)
and, with `preempt_with`, also preempts it with a job in that partition on the canary's node. It
reports: whether the signal arrived and how fast, whether preemption means requeue or cancel
(what SLURM did, and the partition's PreemptMode), and the checkpoint time against the grace time
and the signal lead.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from cluster.adaptors.slurm import SlurmClient, SlurmError, parse_duration_s
from cluster.slurm.job_spec import DRILL_JOB_PREFIX, setup_lines, small_job
from orchestrator.kernel.config.models import SlurmProfile
from orchestrator.kernel.errors import RemoteError
from orchestrator.kernel.states import JobState
from orchestrator.login.wire import DrillReport

READY_TIMEOUT_S = 300.0
SIGNAL_TIMEOUT_S = 60.0
CANARY_TIME_MIN = 10


def _wait(condition: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    return None


def run_drill(profile: SlurmProfile, folder: Path, sweep_file: str, preempt_with: str | None = None) -> DrillReport:
    """The canary runs the first trial of the sweep from the code the laptop shipped to `folder`/code."""
    settings, remote = profile.slurm, profile.remote
    client = SlurmClient(env=remote.env)
    script = folder / "canary.sh"
    script.write_text(
        "\n".join(
            [
                "#!/bin/bash",
                *setup_lines(remote, str(folder)),
                f"exec {shlex.quote(remote.python)} -m cluster.node.drill_canary --sweep {shlex.quote(str(folder / 'code' / sweep_file))} "
                f"--out {shlex.quote(str(folder))}",
                "",
            ]
        )
    )
    canary = small_job(
        settings,
        f"{DRILL_JOB_PREFIX}{profile.name}",
        min(settings.time_limit_min, CANARY_TIME_MIN),
        gpus=min(1, settings.gpus_per_node),
        signal_lead_s=settings.signal_lead_s,
        requeue=True,
        output=str(folder / "canary.log"),
    )
    try:
        job_id = client.submit(canary.sbatch_args(), str(script))
    except SlurmError as exc:
        raise RemoteError(
            "slurm", f"sbatch refused the canary: {exc.message[-300:]}", "check the profile's slurm section", exit_code=1
        ) from None
    report: dict[str, Any] = {"job_id": job_id, "folder": str(folder), "partition": settings.partition}
    try:
        ready = _wait(
            lambda: (folder / "ready.json").exists() and json.loads((folder / "ready.json").read_text()), READY_TIMEOUT_S
        )
        if not ready:
            raise RemoteError(
                "slurm",
                f"the canary job {job_id} did not start and checkpoint within {READY_TIMEOUT_S:.0f} s "
                f"(log: {folder / 'canary.log'})",
                "check that the partition has free resources, or try later",
                exit_code=1,
            )
        report.update(ready)
        partition = client.partitions().get(settings.partition, {})
        report["preempt_mode"] = partition.get("PreemptMode", "unknown")
        report["grace_time_s"] = (
            parse_duration_s(partition.get("GraceTime", "0"))
            if ":" in partition.get("GraceTime", "0")
            else float(partition.get("GraceTime", "0") or 0)
        )
        sent = time.time()
        client.signal(job_id, "USR2")
        arrived = _wait(lambda: _records(folder, 0, "SIGUSR2"), SIGNAL_TIMEOUT_S)
        report["signal_delivered"] = bool(arrived)
        report["signal_latency_s"] = round(arrived[0]["at"] - sent, 2) if arrived else None
        checkpointed = _wait(lambda: _records(folder, 0, "checkpointed"), SIGNAL_TIMEOUT_S)
        report["checkpoint_on_signal_s"] = round(checkpointed[0]["seconds"], 2) if checkpointed else None
        if preempt_with:
            report["preemption"] = _preempt(client, job_id, preempt_with, folder)
        report.update(
            verdicts(
                report.get("checkpoint_s"),
                float(settings.signal_lead_s),
                report["grace_time_s"],
                report.get("every_epochs"),
                report.get("first_step_s"),
            )
        )
    finally:
        client.cancel([job_id])
    return DrillReport.model_validate(report)


def verdicts(
    checkpoint_s: float | None, lead_s: float, grace_s: float, every_epochs: int | None, epoch_s: float | None
) -> dict[str, Any]:
    """What each kind of interruption leaves the trainable for its checkpoint (it fits in half of it):
    the time limit gives `slurm.signal_lead_s` (USR2 before the end); a preemption gives the partition's
    GraceTime, and with none a preempted job stops at once and loses the work since its last periodic
    checkpoint (`checkpoint.every_epochs` epochs at most)."""
    fits_time_limit = checkpoint_s is not None and checkpoint_s < 0.5 * lead_s
    fits_preemption = checkpoint_s is not None and grace_s > 0 and checkpoint_s < 0.5 * grace_s
    lost_s = every_epochs * epoch_s if grace_s <= 0 and every_epochs and epoch_s is not None else None
    return {
        "signal_lead_s": lead_s,
        "fits_time_limit": fits_time_limit,
        "fits_preemption": fits_preemption,
        "lost_on_preemption_s": lost_s,
        "fits": fits_time_limit and fits_preemption,
        "budget_s": min(lead_s, grace_s) if grace_s > 0 else 0.0,
    }


def _records(folder: Path, restart: int, kind: str) -> list[dict[str, Any]]:
    path = folder / f"signals-{restart}.jsonl"
    if not path.exists():
        return []
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if r.get("signal") == kind]


def _preempt(client: SlurmClient, job_id: str, partition: str, folder: Path) -> dict[str, Any]:
    """A job in `partition` on the canary's node asking for all its GPUs: what does SLURM do to the canary?"""
    node = client.job_fields(job_id).get("NodeList", "")
    gres = client.node_fields(node).get("Gres", "gpu:1")
    gpus = gres.split(",")[0].split("(")[0].split(":")[-1] if gres.startswith("gpu") else "1"
    started = time.time()
    try:
        high = client.submit(
            ["--partition", partition, "--nodelist", node, f"--gres=gpu:{gpus}", "--output=/dev/null", "--wrap", "sleep 2"]
        )
    except SlurmError as exc:
        return {"by_job": None, "outcome": f"the preempting job was refused: {exc.message}", "seconds": 0.0, "signals_seen": []}
    outcome = _wait(lambda: _canary_fate(client, job_id), 120)
    client.cancel([high])
    signals = [r["signal"] for r in _records(folder, 0, "SIGUSR2") + _records(folder, 0, "SIGTERM")]
    return {
        "by_job": high,
        "outcome": outcome or "unknown (nothing happened within 120 s)",
        "seconds": round(time.time() - started, 1),
        "signals_seen": signals,
    }


def _canary_fate(client: SlurmClient, job_id: str) -> str | None:
    fields = client.job_fields(job_id)
    if int(fields.get("Restarts", "0") or 0) >= 1:
        return "requeued"
    state = JobState.parse(fields.get("JobState", ""))
    if state.is_ended:
        return f"ended {state.value}"
    if state == JobState.SUSPENDED:
        return "suspended"
    return None
