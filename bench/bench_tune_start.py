"""Where plain Ray Tune spends the start of a sweep, with no orch code at all: the floor under a job's start.

A fresh process per repeat does what any Tune sweep does: `ray.init` (a local Ray, S CPUs), then `Tuner.fit()` over
S trials of a trivial class trainable (one 1 s step each, `reuse_actors=True`). Timestamps, from the moment the
process starts importing Ray:

    import     `import ray` + `from ray import tune`
    init       `ray.init` (Ray's daemons: GCS, raylet, agents)
    set-up     `fit()` -> Tune's callbacks are set up (controller, experiment folder, searcher)
    trial      -> the first trial's actor is started (`on_trial_start`: its worker process is up, the class loaded)
    result     -> the first result of the first trial (one 1 s step)

The trial phase is S worker processes starting at once, each importing Ray and Tune: on a machine with fewer cores
than S they queue for the CPU. Run it with the same S on machines with different core counts to see that.

    .venv/bin/python bench/bench_tune_start.py --slots 4 --repeats 3
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

PHASES = ("import", "init", "set-up", "trial", "result")

ONE_RUN = r"""
import json, os, sys, tempfile, time
began = float(sys.argv[2])
os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_AIR_NEW_OUTPUT="0")
marks = {}
import ray
from ray import tune
marks["import"] = time.time()
ray.init(address="local", num_cpus=int(sys.argv[1]), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
marks["init"] = time.time()

class Trivial(tune.Trainable):
    def setup(self, config):
        self.steps = 0
    def reset_config(self, new_config):
        self.steps = 0
        return True
    def step(self):
        time.sleep(1)
        self.steps += 1
        return {"loss": 1.0, "done": True}
    def save_checkpoint(self, checkpoint_dir):
        return checkpoint_dir
    def load_checkpoint(self, checkpoint_dir):
        pass

class Marks(tune.Callback):
    def setup(self, **info):
        marks.setdefault("set-up", time.time())
    def on_trial_start(self, iteration, trials, trial, **info):
        marks.setdefault("trial", time.time())
    def on_trial_result(self, iteration, trials, trial, result, **info):
        marks.setdefault("result", time.time())

tuner = tune.Tuner(
    Trivial,
    param_space={"i": tune.grid_search(list(range(int(sys.argv[1]))))},
    tune_config=tune.TuneConfig(metric="loss", mode="min", reuse_actors=True),
    run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), name="start", callbacks=[Marks()], verbose=0),
)
tuner.fit()
ray.shutdown()
print("MARKS " + json.dumps({k: v - began for k, v in marks.items()}))
"""


def one_run(slots: int) -> dict[str, float]:
    """Seconds from process start to each mark, in a fresh Python process."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [sys.executable, "-c", ONE_RUN, str(slots), repr(time.time())],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=300,
            check=True,
        ).stdout
    line = next(line for line in out.splitlines() if line.startswith("MARKS "))
    return json.loads(line[len("MARKS ") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, default=4, help="S: CPUs given to Ray and trials started at once")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [one_run(args.slots) for _ in range(args.repeats)]
    print(
        f"# plain Ray Tune start: {os.cpu_count()} CPU cores, S = {args.slots}, {args.repeats} fresh processes; "
        "seconds since the process began (median, min-max), and each phase's own share"
    )
    print(f"{'mark':<8} {'since start s':>22} {'phase s':>8}")
    previous = 0.0
    for phase in PHASES:
        values = [run[phase] for run in runs]
        median = statistics.median(values)
        print(f"{phase:<8} {median:8.2f} ({min(values):.2f}-{max(values):.2f}) {median - previous:8.2f}")
        previous = median
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
