"""Requeue to training resumed: how long a preempted or requeued sweep is away from its GPUs.

On the local test cluster, runs conf/sweeps/avae-slurm-requeue-bench.yaml (2 trials of 90 epochs, checkpoint every
2 epochs) and interrupts it `--interruptions` times, alternating a preemption (a job in the high
partition on the sweep's node: SLURM sends USR2, the trials checkpoint, submitit requeues) and
`scontrol requeue`. Per interruption it reports

    handover   signal -> requeue (trials checkpointed and the experiment state saved; preemptions only)
    pending    requeue -> job running again (SLURM; the test cluster's requeue delay is ~7 s, skipped
               here with StartTime=now as an admin would; real clusters add their own)
    restore    job running -> attempt start in the job entry (submitit, Python start)
    resume     attempt start -> first new result of each trial (Ray start, Tuner.restore, checkpoint load)
    total      requeue -> training resumed (median over the trials)
    redone     steps trained twice (restored from a checkpoint older than the last logged step)

and, as the baseline of the same run, the cold start of the same sweep: submit -> first result.

    make slurm-up SLURM_TEST_DIR=/tmp/orch-slurm && . /tmp/orch-slurm/env.sh
    .venv/bin/python bench/bench_requeue_resume.py --interruptions 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "conf" / "sweeps" / "avae-slurm-requeue-bench.yaml"  # 90 epochs: room for several interruptions


def slurm(*argv: str, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout.strip()


def orch(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ORCH_PYTHON": sys.executable},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


def results_after(folder: Path, sweep_id: str, since: float) -> list[float]:
    """Per trial: the timestamp of its first result after `since` (result.json lines)."""
    firsts = []
    for path in (folder / "ray_results" / sweep_id).glob("*/result.json"):
        stamps = [json.loads(line).get("timestamp", 0) for line in path.read_text().splitlines() if line.strip()]
        later = [s for s in stamps if s >= since]
        if later:
            firsts.append(min(later))
    return firsts


def wait(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def job_state(job_id: str) -> str:
    return slurm("squeue", "--noheader", "--jobs", job_id, "--format=%T", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interruptions", type=int, default=4)
    args = parser.parse_args()
    if "ORCH_SLURM_DIR" not in os.environ:
        parser.error("bring the test cluster up and source its env.sh first (make slurm-up; . DIR/env.sh)")
    cluster_dir = Path(os.environ["ORCH_SLURM_DIR"])
    submitted = time.time()
    out = orch("submit", str(SWEEP), "--cluster", "slurm-local")
    sweep_id = out.split("submitted sweep ", 1)[1].split()[0]
    job_id = out.split("SLURM job(s) ", 1)[1].split(";")[0]
    folder = cluster_dir / "remote" / "sweeps" / sweep_id
    cold = wait(lambda: (r := results_after(folder, sweep_id, submitted)) and len(r) == 2 and r, 300, "the first results")
    cold_s = statistics.median(cold) - submitted
    print(f"cold start (submit -> first result): {cold_s:.1f} s", flush=True)
    rows = []
    for index in range(args.interruptions):
        kind = "preemption" if index % 2 == 0 else "scontrol requeue"
        time.sleep(4)  # a few epochs into the attempt
        attempts_before = len(json.loads((folder / "attempts.json").read_text()))
        t0 = time.time()
        if kind == "preemption":
            node = slurm("squeue", "--noheader", "--jobs", job_id, "--format=%N")
            slurm("sbatch", "--parsable", "-p", "high", "-w", node, "--gres=gpu:4", "--output=/dev/null", "--wrap", "sleep 1")
        else:
            slurm("scontrol", "requeue", job_id)
        wait(lambda: job_state(job_id) in ("PENDING", "REQUEUED", "REQUEUE_HOLD"), 120, "the requeue")
        requeued = time.time()
        wait(
            lambda: (
                (slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False) or True)
                and job_state(job_id) == "RUNNING"
            ),
            120,
            "the job to run again",
        )
        running = time.time()
        ledger = wait(
            lambda before=attempts_before: (e := json.loads((folder / "attempts.json").read_text())) and len(e) > before and e,
            120,
            "the new attempt",
        )
        started = ledger[-1]["started_at"]
        firsts = wait(
            lambda since=started: (r := results_after(folder, sweep_id, since)) and len(r) == 2 and r, 300, "training to resume"
        )
        token = ledger[-1]["token"]
        recovery = wait(
            lambda token=token: (
                (folder / "recovery.json").exists()
                and [e for e in json.loads((folder / "recovery.json").read_text()) if e["token"] == token]
            ),
            60,
            "the tracker's recovery record",
        )
        redone = sum(e["redone_steps"] for e in recovery)
        handover = ledger[-2].get("ended", "")
        row = {
            "kind": kind,
            "handover_s": requeued - t0,
            "pending_s": running - requeued,
            "restore_s": started - running,
            "resume_s": statistics.median(firsts) - started,
            "total_s": statistics.median(firsts) - requeued,
            "redone": redone,
            "ended": handover,
        }
        rows.append(row)
        print(
            f"{index + 1} {kind}: handover {row['handover_s']:.1f} s, pending {row['pending_s']:.1f} s, restore "
            f"{row['restore_s']:.1f} s, resume {row['resume_s']:.1f} s, total {row['total_s']:.1f} s "
            f"({row['total_s'] / cold_s:.2f}x the cold start), {redone} steps re-done; previous attempt: {handover}",
            flush=True,
        )
    slurm("scancel", job_id, check=False)
    totals = [r["total_s"] for r in rows]
    print(
        f"\nrequeue -> training resumed: median {statistics.median(totals):.1f} s over {len(rows)} interruptions "
        f"(min {min(totals):.1f}, max {max(totals):.1f}); cold start {cold_s:.1f} s; ratio {statistics.median(totals) / cold_s:.2f}x; "
        f"steps re-done per interruption: {[r['redone'] for r in rows]} (checkpoint every 2 epochs)"
    )
    print(f"measured {datetime.now():%Y-%m-%d %H:%M}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
