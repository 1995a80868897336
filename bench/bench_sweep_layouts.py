"""Sweep layouts on SLURM: one allocation per sweep against shards as job-array tasks.

Runs the same sweep (conf/sweeps/avae-slurm-layouts.yaml: 8 short trials of the tiny
AVAE, one fake GPU each) through `orch submit` on the local test cluster, once per
layout and repeat, one sweep at a time, layouts interleaved within every repeat:

    allocation   1 job: 1 node, 4 GPUs (Ray places 4 trials at a time)
    array-k2     1 job array of 2 tasks, 2 GPUs each (4 trials of a shard, 2 at a time)
    array-k4     1 job array of 4 tasks, 1 GPU each (2 trials of a shard, one after the other)

Same GPUs in total (4) whenever all tasks of an array run at once. Per run it reports

    wall       `orch submit` started -> last trial run ended (MLflow end times)
    submit     how long `orch submit` took to return
    job        SLURM job time: the sum of sacct's ElapsedRaw over the jobs (array tasks)
    gpu        GPU time held: ElapsedRaw x allocated gres/gpu, summed
    job start  per job: sacct Start -> its first trial's run start (Ray start, Tune set-up)
    job tail   per job: its last trial's run end -> sacct End (Tune/Ray shutdown, submitit's result)
    trial ovh  per trial: run start -> run end minus the trial's training time (time_total_s):
               the trainable's set-up, checkpoints and teardown

and medians over repeats with ratios against the allocation baseline of the same run.

    make slurm-up SLURM_TEST_DIR=/tmp/orch-slurm && . /tmp/orch-slurm/env.sh
    .venv/bin/python bench/bench_sweep_layouts.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "conf" / "sweeps" / "avae-slurm-layouts.yaml"
PROFILE = REPO / "conf" / "clusters" / "slurm-local.yaml"
LAYOUTS: dict[str, dict[str, Any]] = {
    "allocation": {"layout": "allocation", "nodes": 1, "gpus_per_node": 4},
    "allocation-2n": {"layout": "allocation", "nodes": 2, "gpus_per_node": 2},
    "array-k2": {"layout": "array", "shards": 2, "gpus_per_node": 2},
    "array-k4": {"layout": "array", "shards": 4, "gpus_per_node": 1},
}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def write_profile(folder: Path, name: str, slurm: dict[str, Any], include_untracked: bool) -> Path:
    data = yaml.safe_load(PROFILE.read_text())
    data["name"] = f"bench-{name}"
    data["slurm"] = {**data["slurm"], "cpus_per_gpu": 1, **slurm}
    if include_untracked:  # a working tree with new files: ship them too
        data["remote"]["untracked_files"] = "include"
    path = folder / f"bench-{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def orch(args: list[str], timeout_s: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orch {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_once(profile: Path, timeout_s: float) -> dict[str, Any]:
    began = time.time()
    out = orch(["submit", str(SWEEP), "--cluster", str(profile)])
    submit_s = time.time() - began
    sweep_id = out.split("submitted sweep ", 1)[1].split()[0]
    deadline = time.monotonic() + timeout_s
    while True:
        state = json.loads(orch(["status", sweep_id, "--cluster", str(profile), "--json"]))[0]
        if state["jobs"] and all(job["state"] in TERMINAL for job in state["jobs"]):
            break
        if time.monotonic() > deadline:
            orch(["cancel", sweep_id, "--cluster", str(profile)])
            raise RuntimeError(f"{sweep_id} did not finish in {timeout_s:g} s")
        time.sleep(2)
    return measure(sweep_id, [job["job_id"] for job in state["jobs"]], began, submit_s)


def sacct(job_ids: list[str]) -> list[dict[str, str]]:
    fields = ["JobID", "JobIDRaw", "State", "Start", "End", "ElapsedRaw", "AllocTRES"]
    done = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--allocations", "-j", ",".join(job_ids), f"--format={','.join(fields)}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [dict(zip(fields, line.split("|"))) for line in done.stdout.splitlines() if line.strip()]


def gpus(tres: str) -> int:
    found = [item.split("=", 1)[1] for item in tres.split(",") if item.startswith("gres/gpu=")]
    return int(found[0]) if found else 0


def trial_runs(sweep_id: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{os.environ['ORCH_SLURM_DIR']}/mlflow.db")
    experiment = client.get_experiment_by_name("avae")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`orch.sweep_id` = '{sweep_id}'")
    return [run for run in runs if run.data.tags.get("orch.kind") == "trial"]


def training_seconds(sweep_id: str) -> dict[str, float]:
    """trial id -> time_total_s of its last result, from the Tune experiment folder(s)."""
    results = Path(os.environ["ORCH_SLURM_DIR"]) / "remote" / "sweeps" / sweep_id / "ray_results"
    seconds = {}
    for path in results.glob("*/*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        seconds[path.parent.name] = float(json.loads(lines[-1])["time_total_s"])
    return seconds


def measure(sweep_id: str, job_ids: list[str], began: float, submit_s: float) -> dict[str, Any]:
    records = sacct(job_ids)
    runs = trial_runs(sweep_id)
    states = sorted({record["State"] for record in records})
    if len(runs) != 8 or states != ["COMPLETED"] or any(run.info.status != "FINISHED" for run in runs):
        raise RuntimeError(f"{sweep_id}: {len(runs)} trial runs, job states {states}")
    trained = training_seconds(sweep_id)
    ends = [run.info.end_time / 1000 for run in runs]
    job_start, job_tail = [], []
    for record in records:
        mine = [
            run
            for run in runs
            if run.data.tags.get("orch.slurm_array_task", run.data.tags.get("orch.slurm_job_id"))
            in (record["JobID"], record["JobIDRaw"])
        ]
        if mine:
            job_start.append(min(r.info.start_time for r in mine) / 1000 - datetime.fromisoformat(record["Start"]).timestamp())
            job_tail.append(datetime.fromisoformat(record["End"]).timestamp() - max(r.info.end_time for r in mine) / 1000)
    overhead = [(run.info.end_time - run.info.start_time) / 1000 - trained[run.data.tags["orch.trial_id"]] for run in runs]
    return {
        "sweep_id": sweep_id,
        "jobs": len(records),
        "wall_s": max(ends) - began,
        "submit_s": submit_s,
        "job_s": sum(int(r["ElapsedRaw"]) for r in records),
        "gpu_s": sum(int(r["ElapsedRaw"]) * gpus(r["AllocTRES"]) for r in records),
        "job_start_s": statistics.median(job_start),
        "job_tail_s": statistics.median(job_tail),
        "trial_overhead_s": statistics.median(overhead),
        "training_s": statistics.median(trained.values()),
    }


COLUMNS = [
    ("wall_s", "wall"),
    ("submit_s", "submit"),
    ("job_s", "job"),
    ("gpu_s", "gpu"),
    ("job_start_s", "job start"),
    ("job_tail_s", "job tail"),
    ("trial_overhead_s", "trial ovh"),
    ("training_s", "training"),
]


def report(results: dict[str, list[dict[str, Any]]], baseline: str) -> None:
    print("\nper run (seconds):")
    for layout, runs in results.items():
        for run in runs:
            print(
                f"  {layout:14s} {run['sweep_id']}: jobs {run['jobs']}, "
                + ", ".join(f"{label} {run[key]:.1f}" for key, label in COLUMNS)
            )
    medians = {
        layout: {key: statistics.median(run[key] for run in runs) for key, _ in COLUMNS} for layout, runs in results.items()
    }
    print(f"\nmedians over {min(len(r) for r in results.values())} repeats (ratio vs {baseline} of the same run):")
    print("  " + "layout".ljust(14) + "".join(label.rjust(18) for _, label in COLUMNS))
    for layout, values in medians.items():
        cells = []
        for key, _ in COLUMNS:
            base = medians[baseline][key]
            ratio = f"{values[key] / base:.2f}x" if base else "-"
            cells.append(f"{values[key]:.1f} ({ratio})".rjust(18))
        print("  " + layout.ljust(14) + "".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--layouts", default="allocation,array-k2,array-k4", help=f"from {', '.join(LAYOUTS)}; the first is the baseline"
    )
    parser.add_argument("--timeout-s", type=float, default=600, help="per sweep")
    parser.add_argument("--tracked-only", action="store_true", help="ship only tracked files (the profile's default: warn)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    if "ORCH_SLURM_DIR" not in os.environ:
        parser.error("bring the test cluster up and source its env.sh first (make slurm-up; . DIR/env.sh)")
    names = args.layouts.split(",")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        profiles = {name: write_profile(Path(tmp), name, LAYOUTS[name], not args.tracked_only) for name in names}
        for repeat in range(args.repeats):
            for name in names:  # interleaved: a busy machine does not bias one layout
                result = run_once(profiles[name], args.timeout_s)
                results[name].append(result)
                print(f"repeat {repeat + 1} {name}: wall {result['wall_s']:.1f} s, job {result['job_s']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results, names[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
