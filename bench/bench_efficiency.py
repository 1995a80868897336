"""Efficiency: N fixed-length trials of T seconds on S slots, five ways, side by side in one run.

    orch-submit   `orch submit` to the local SLURM test cluster: one job, S fake GPUs, Ray places S trials at a time
    map-array     one SLURM array task per trial, submitit `map_array` with S tasks at a time (the Hydra-launcher way);
                  each task runs the same trial as a plain script, no Ray, no tracking
    ray-tune      plain Ray Tune on this machine, S slots (`ray.init(num_cpus=S)`, 1 CPU a trial), Tune's defaults
    ray-tune-reuse  the same with `reuse_actors=True` (the trial class implements `reset_config`)
    orch-run      `orch run` on this machine, S slots (a local profile with `cpus: S`)

The trial is bench/efficiency/fixed_length.py (a plain Ray Tune class written into a lab's own git workspace made
here): it sleeps one second a step, reports `loss` every step and is checkpointed every step. Sleeping keeps CPU
contention on a 2-core machine out of the figure. Per way and N it reports

    makespan     submission (command start) -> all done: the last SLURM job's end (sacct) or the command's exit
    floor        N x T / S: every slot training all the time
    held         slot-seconds held: sacct ElapsedRaw x gres/gpu summed (SLURM), S x makespan (this machine)
    trained      N x T slot-seconds of training
    first        (orch ways) submission -> the first metric of the first trial in MLflow
    start        (orch ways) job start (sacct) or command start -> the first trial's MLflow run start
    tail         (orch ways) the last trial's run end -> job end (sacct) or the command's exit
    gap          (orch ways) median time from a trial's end to the next trial's start in a free slot
    submit       (orch-submit) how long `orch submit` took to return

and the two ratios makespan/floor and held/trained. Ways are interleaved within every repeat.

    make slurm-up SLURM_TEST_DIR=/tmp/orch-slurm && . /tmp/orch-slurm/env.sh
    .venv/bin/python bench/bench_efficiency.py --trials 50,200 --seconds 5 --slots 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
TRIAL_CODE = REPO / "bench" / "efficiency"
SLURM_PROFILE = REPO / "conf" / "clusters" / "slurm-local.yaml"
WAYS = ("orch-submit", "map-array", "ray-tune", "ray-tune-reuse", "orch-run")
SLURM_WAYS = {"orch-submit", "map-array"}
ORCH_COLUMNS = ("first_s", "start_s", "tail_s", "gap_s", "submit_s")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def write(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def make_lab(root: Path, trials: list[int], seconds: float, slots: int) -> Path:
    """A lab's own workspace with the fixed-length project, its git committed, one sweep per N and place."""
    (root / "lab").mkdir(parents=True)
    (root / "lab" / "__init__.py").write_text("")
    shutil.copy(TRIAL_CODE / "fixed_length.py", root / "lab" / "fixed_length.py")
    write(
        root / "conf" / "projects" / "fixed-length.yaml",
        {
            "name": "fixed-length",
            "trainable": "lab.fixed_length:FixedLength",
            "metrics": ["loss"],
            "defaults": {"seconds": seconds, "step_s": 1.0, "index": 0},
        },
    )
    for n in trials:
        for place, gpu in (("local", 0), ("slurm", 1)):
            write(
                root / "conf" / "sweeps" / f"eff-{place}-{n}.yaml",
                {
                    "name": f"eff-{place}-{n}",
                    "project": "fixed-length",
                    "metric": "loss",
                    "mode": "min",
                    "search_space": {"index": {"grid": list(range(n))}},
                    "resources_per_trial": {"cpu": 1, "gpu": gpu},
                    "checkpoint": {"every_epochs": 1, "keep": 1},
                },
            )
    write(root / "conf" / "clusters" / "local-slots.yaml", {"name": "local-slots", "backend": "local", "cpus": slots, "gpus": 0})
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    profile["name"] = "slurm-slots"
    profile["slurm"] = {**profile["slurm"], "gpus_per_node": slots, "cpus_per_gpu": 1}
    write(root / "conf" / "clusters" / "slurm-slots.yaml", profile)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-qm", "lab"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, timeout=60)
    return root


def orch(lab: Path, args: list[str], timeout_s: float = 3600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.cli", *args],
        cwd=lab,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orch {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def sacct(job_ids: list[str]) -> list[dict[str, str]]:
    fields = ["JobID", "State", "Start", "End", "ElapsedRaw", "AllocTRES"]
    done = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--allocations", "-j", ",".join(job_ids), f"--format={','.join(fields)}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [dict(zip(fields, line.split("|"))) for line in done.stdout.splitlines() if line.strip()]


def wait_for_jobs(job_ids: list[str], expected: int, timeout_s: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = sacct(job_ids)
        tasks = [r for r in records if "[" not in r["JobID"]]  # pending array ranges show as 12_[3-9]
        if len(tasks) >= expected and all(r["State"].split()[0] in ENDED for r in tasks):
            return tasks
        time.sleep(2)
    raise RuntimeError(f"jobs {job_ids} did not end in {timeout_s:g} s")


def slurm_figures(records: list[dict[str, str]], began: float) -> dict[str, float]:
    states = sorted({r["State"] for r in records})
    if states != ["COMPLETED"]:
        raise RuntimeError(f"SLURM jobs ended {states}")
    gpus = [int(next((i.split("=")[1] for i in r["AllocTRES"].split(",") if i.startswith("gres/gpu=")), "0")) for r in records]
    return {
        "makespan_s": max(datetime.fromisoformat(r["End"]).timestamp() for r in records) - began,
        "held_s": float(sum(int(r["ElapsedRaw"]) * g for r, g in zip(records, gpus))),
    }


def trial_times(tracking_uri: str, experiment: str, sweep_id: str, expected: int, slots: int) -> dict[str, float]:
    """From MLflow (checks every trial's run finished): the first `loss` of any trial, the first trial run's
    start, the last one's end (epoch seconds), and the median gap between a trial's end and the next start."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RuntimeError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    runs = client.search_runs(
        [found.experiment_id], f"tags.`orch.sweep_id` = '{sweep_id}' and tags.`orch.kind` = 'trial'", max_results=5000
    )
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if len(finished) != expected:
        raise RuntimeError(f"{sweep_id}: {len(finished)} of {expected} trial runs FINISHED")
    starts = sorted(r.info.start_time / 1000 for r in runs)
    ends = sorted(r.info.end_time / 1000 for r in runs)
    earliest = sorted(runs, key=lambda r: r.info.start_time)[:4]
    stamps = [m.timestamp for r in earliest for m in client.get_metric_history(r.info.run_id, "loss")]
    # slots are interchangeable: the i-th trial to end frees the slot the (i + slots)-th trial to start gets
    gaps = [start - end for start, end in zip(starts[slots:], ends)]
    return {
        "first_metric": min(stamps) / 1000,
        "first_start": starts[0],
        "last_end": ends[-1],
        "gap_s": statistics.median(gaps) if gaps else 0.0,
    }


def orch_submit(lab: Path, n: int, slots: int, timeout_s: float) -> dict[str, float]:
    began = time.time()
    out = orch(lab, ["submit", f"conf/sweeps/eff-slurm-{n}.yaml", "--cluster", "slurm-slots"])
    submit_s = time.time() - began
    sweep_id = out.split("submitted sweep ", 1)[1].split()[0]
    deadline = time.monotonic() + timeout_s
    while True:
        state = json.loads(orch(lab, ["status", sweep_id, "--cluster", "slurm-slots", "--json"]))[0]
        if state["jobs"] and all(job["state"] in ENDED for job in state["jobs"]):
            break
        if time.monotonic() > deadline:
            orch(lab, ["cancel", sweep_id, "--cluster", "slurm-slots"])
            raise RuntimeError(f"{sweep_id} did not finish in {timeout_s:g} s")
        time.sleep(2)
    records = wait_for_jobs([job["job_id"] for job in state["jobs"]], 1, 120)
    times = trial_times(f"sqlite:///{os.environ['ORCH_SLURM_DIR']}/mlflow.db", "fixed-length", sweep_id, n, slots)
    return {
        **slurm_figures(records, began),
        "submit_s": submit_s,
        "first_s": times["first_metric"] - began,
        "start_s": times["first_start"] - min(datetime.fromisoformat(r["Start"]).timestamp() for r in records),
        "tail_s": max(datetime.fromisoformat(r["End"]).timestamp() for r in records) - times["last_end"],
        "gap_s": times["gap_s"],
    }


MAP_ARRAY = """
import json, sys
import submitit
from plain_trial import run_trial
n, seconds, slots, folder = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
executor = submitit.AutoExecutor(folder=folder + "/submitit", cluster="slurm")
executor.update_parameters(slurm_partition="low", slurm_account="orch", gpus_per_node=1, cpus_per_task=1, mem_gb=1,
                           timeout_min=30, slurm_array_parallelism=slots, name="orch-bench.map-array")
configs = [{"seconds": seconds, "step_s": 1.0, "index": i} for i in range(n)]
jobs = executor.map_array(run_trial, configs, [folder] * n)
print(json.dumps(sorted({job.job_id.split("_")[0] for job in jobs})), flush=True)
"""


def map_array(work: Path, n: int, seconds: float, slots: int, timeout_s: float) -> dict[str, float]:
    folder = work / f"map-array-{n}-{time.time_ns()}"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TRIAL_CODE), os.environ.get("PYTHONPATH", "")])}
    began = time.time()
    done = subprocess.run(
        [sys.executable, "-c", MAP_ARRAY, str(n), str(seconds), str(slots), str(folder)],
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )  # fmt: skip
    array_ids = json.loads(done.stdout.strip().splitlines()[-1])
    records = wait_for_jobs(array_ids, n, timeout_s)
    written = len(list(folder.glob("trial_*.json")))
    if written != n:
        raise RuntimeError(f"map-array: {written} of {n} trials left their state")
    return slurm_figures(records, began)


RAY_TUNE = """
import sys
import ray
from ray import tune
from lab.fixed_length import FixedLength
n, seconds, slots, storage, reuse = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
ray.init(num_cpus=slots, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
tuner = tune.Tuner(
    tune.with_resources(FixedLength, {"cpu": 1}),
    param_space={"seconds": seconds, "step_s": 1.0, "index": tune.grid_search(list(range(n)))},
    tune_config=tune.TuneConfig(metric="loss", mode="min", reuse_actors=reuse),
    run_config=tune.RunConfig(storage_path=storage, verbose=0,
                              checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1)),
)
results = tuner.fit()
assert len(results) == n and not results.errors, results.errors
ray.shutdown()
"""


def ray_tune(lab: Path, work: Path, n: int, seconds: float, slots: int, reuse: bool) -> dict[str, float]:
    storage = work / f"ray-tune-{n}-{time.time_ns()}"
    env = {
        **os.environ,
        "PYTHONPATH": str(lab),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    began = time.time()
    subprocess.run([sys.executable, "-c", RAY_TUNE, str(n), str(seconds), str(slots), str(storage), str(int(reuse))],
                   capture_output=True, text=True, env=env, timeout=3600, check=True)  # fmt: skip
    makespan = time.time() - began
    return {"makespan_s": makespan, "held_s": makespan * slots}


def orch_run(lab: Path, n: int, slots: int) -> dict[str, float]:
    began = time.time()
    out = orch(lab, ["run", f"conf/sweeps/eff-local-{n}.yaml", "--cluster", "local-slots"])
    makespan = time.time() - began
    sweep_id = next(line.split("sweep ", 1)[1].split()[0].rstrip(":") for line in out.splitlines() if "sweep " in line)
    times = trial_times(f"sqlite:///{lab}/.orch/mlflow.db", "fixed-length", sweep_id, n, slots)
    return {
        "makespan_s": makespan,
        "held_s": makespan * slots,
        "first_s": times["first_metric"] - began,
        "start_s": times["first_start"] - began,
        "tail_s": began + makespan - times["last_end"],
        "gap_s": times["gap_s"],
    }


def run_way(way: str, lab: Path, work: Path, n: int, seconds: float, slots: int) -> dict[str, float]:
    timeout_s = 600 + 4 * n * seconds / slots
    if way == "orch-submit":
        figures = orch_submit(lab, n, slots, timeout_s)
    elif way == "map-array":
        figures = map_array(work, n, seconds, slots, timeout_s)
    elif way in ("ray-tune", "ray-tune-reuse"):
        figures = ray_tune(lab, work, n, seconds, slots, reuse=way == "ray-tune-reuse")
    else:
        figures = orch_run(lab, n, slots)
    floor, trained = n * seconds / slots, n * seconds
    return {**figures, "over_floor": figures["makespan_s"] / floor, "held_per_trained": figures["held_s"] / trained}


def report(results: dict[int, Any], seconds: float, slots: int) -> None:
    print(f"\nT = {seconds:g} s, S = {slots}; medians over repeats, (min-max):")
    print(
        f"  {'N':>5} {'way':14} {'makespan s':>20} {'/floor':>18} {'held/trained':>18} "
        + " ".join(f"{c.replace('_s', ' s'):>8}" for c in ORCH_COLUMNS)
    )
    for n, ways in results.items():
        for way, runs in ways.items():
            cells = []
            for key in ("makespan_s", "over_floor", "held_per_trained"):
                values = [run[key] for run in runs]
                cells.append(
                    f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})".rjust(
                        20 if key == "makespan_s" else 18
                    )
                )
            extra = [f"{statistics.median(r[k] for r in runs):.1f}" if k in runs[0] else "-" for k in ORCH_COLUMNS]
            print(f"  {n:>5} {way:14} {''.join(cells)} " + " ".join(f"{e:>8}" for e in extra))


DOCS = REPO / "docs" / "benchmarks.md"
PICTURE = REPO / "docs" / "img" / "bench-efficiency.png"
BEGIN, END = "<!-- bench_efficiency: begin (written by bench/bench_efficiency.py --docs) -->", "<!-- bench_efficiency: end -->"


def median_range(runs: list[dict[str, float]], key: str, digits: int = 2) -> str:
    values = [run[key] for run in runs]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def docs_section(data: dict[str, Any], command: str) -> str:
    """The efficiency section of docs/benchmarks.md: machine, command, medians with min-max, ratios per pair."""
    import platform

    seconds, slots, results = data["seconds"], data["slots"], data["results"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    lines = [
        BEGIN,
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; commit {commit}; {data.get('when', '')}. Command:",
        "",
        f"    {command}",
        "",
        f"T = {seconds:g} s per trial, S = {slots} slots; medians over {data.get('repeats', 1)} repeat(s) with min-max. "
        "**makespan/floor**: makespan over N x T / S; **held/trained**: slot-seconds held per slot-second of training; "
        "**first**: submission -> the first metric of the first trial in MLflow; **start**: job start (sacct) or command "
        "start -> the first trial's run start; **tail**: the last trial's run end -> job end or command exit; **gap**: "
        "median time from a trial's end to the next trial's start; **submit**: `orch submit` until it returned.",
        "",
        "| N | way | makespan s | makespan/floor | held/trained | first s | start s | tail s | gap s | submit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, ways in results.items():
        for way, runs in ways.items():
            extra = [median_range(runs, k, 1) if k in runs[0] else "-" for k in ORCH_COLUMNS]
            lines.append(
                f"| {n} | {way} | {median_range(runs, 'makespan_s', 1)} | {median_range(runs, 'over_floor')} | "
                f"{median_range(runs, 'held_per_trained')} | " + " | ".join(extra) + " |"
            )
    lines += ["", "Ratios per pair (median makespan of the row way / of the column way, same N, same run):", ""]
    for n, ways in results.items():
        names = list(ways)
        lines += [f"N = {n}:", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for a in names:
            cells = [
                f"{statistics.median(r['makespan_s'] for r in ways[a]) / statistics.median(r['makespan_s'] for r in ways[b]):.2f}"
                for b in names
            ]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"![makespan over the floor against N](img/{PICTURE.name})", END]
    return "\n".join(lines)


def write_docs(data: dict[str, Any], command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for way in WAYS:
        points = [(int(n), ways[way]) for n, ways in results.items() if way in ways]
        if not points:
            continue
        for axis, key in zip(axes, ("over_floor", "held_per_trained")):
            axis.plot([n for n, _ in points], [statistics.median(r[key] for r in runs) for _, runs in points], "o-", label=way)
    for axis, title in zip(axes, ("makespan / floor", "slot-seconds held / trained")):
        axis.set_xscale("log")
        axis.set_xlabel("trials N")
        axis.set_title(title)
        axis.axhline(1.0, color="grey", linewidth=0.8)
    axes[0].legend()
    figure.suptitle(f"{data['slots']} slots, {data['seconds']:g} s trials (bench/bench_efficiency.py)")
    figure.tight_layout()
    PICTURE.parent.mkdir(exist_ok=True)
    figure.savefig(PICTURE, dpi=100)
    text = DOCS.read_text()
    section = docs_section(data, command)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Efficiency: N trials of T seconds on S slots, side by side\n\n" + section + "\n"
    DOCS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="50", help="comma-separated N values")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ways", default=",".join(WAYS), help=f"from {', '.join(WAYS)}")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--docs", action="store_true", help=f"write the results into {DOCS.name} and {PICTURE.name}")
    parser.add_argument("--from-json", type=Path, help="no runs: render --docs from a file written by --json")
    args = parser.parse_args()
    command = "bench/bench_efficiency.py " + " ".join(sys.argv[1:])
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        write_docs(data, data.get("command", command))
        return 0
    ways = args.ways.split(",")
    if SLURM_WAYS & set(ways) and "ORCH_SLURM_DIR" not in os.environ:
        parser.error("bring the test cluster up and source its env.sh first (make slurm-up; . DIR/env.sh)")
    trials = [int(n) for n in args.trials.split(",")]
    results: dict[int, Any] = {n: {way: [] for way in ways} for n in trials}
    with tempfile.TemporaryDirectory(prefix="orch-bench-eff-") as tmp:
        lab = make_lab(Path(tmp) / "lab", trials, args.seconds, args.slots)
        work = Path(os.environ.get("ORCH_SLURM_DIR", tmp)) / "bench-efficiency"  # seen by the SLURM nodes
        work.mkdir(exist_ok=True)
        for n in trials:
            for repeat in range(args.repeats):
                for way in ways:  # interleaved: a busy machine does not bias one way
                    result = run_way(way, lab, work, n, args.seconds, args.slots)
                    results[n][way].append(result)
                    print(f"N={n} repeat {repeat + 1} {way}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)
    data = {
        "seconds": args.seconds,
        "slots": args.slots,
        "repeats": args.repeats,
        "when": time.strftime("%Y-%m-%d"),
        "command": command,
        "results": {str(n): ways for n, ways in results.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    report(results, args.seconds, args.slots)
    if args.docs:
        write_docs(data, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
