"""The end of a SLURM job: stopping the Ray head it started, after the sweep's driver has disconnected.

What every job does at its end (cluster/node/ray_allocation.ray_head): the head runs as `ray start --head
--block` in its own process group; after `tuner.fit()` and `ray.shutdown()` the job stops that group. Measured
here with the job's own code (ray_head, a driver that runs one task so a worker process exists, shutdown),
interleaved per repeat:

    graceful   SIGTERM, then wait for `ray start` to stop its children (up to 60 s): what a 20 s grace
               waited out before the SIGKILL, so a 20 s-capped figure here was 20 s in a job
    grace 2 s  SIGTERM, up to 2 s, then SIGKILL to the group (what jobs did until issue 14)
    grace 0.25 s  the same with RAY_STOP_GRACE_S = 0.25 s (what jobs do now)

Prints each repeat's stop time and the medians with the ratio new / graceful.

    .venv/bin/python bench/bench_ray_stop.py --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def one_stop(grace_s: float) -> float:
    """Seconds from the end of the driver to the Ray head's process group being gone."""
    import ray

    from cluster.node import ray_allocation
    from cluster.node.ray_allocation import Allocation, ray_head

    allocation = Allocation(job_id=f"b{time.time_ns() % 10**8}", attempt=0, rank=0, nodes=1, cpus_per_node=1, gpus_per_node=0)
    ray_allocation.RAY_STOP_GRACE_S = grace_s
    with tempfile.TemporaryDirectory() as rendezvous:
        context = ray_head(allocation, Path(rendezvous))
        address = context.__enter__()
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        ray.get(ray.remote(lambda: 1).remote())
        ray.shutdown()
        started = time.perf_counter()
        context.__exit__(None, None, None)
        stopped = time.perf_counter() - started
    for temp_dir in Path("/tmp").glob(f"orch-ray-{allocation.key}-*"):  # the head's session folder
        shutil.rmtree(temp_dir, ignore_errors=True)
    return stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ways = {"graceful": 60.0, "grace 2 s": 2.0, "grace 0.25 s": 0.25}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(args.repeats):
        order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
        for way in order:
            seconds[way].append(one_stop(ways[way]))
            print(f"repeat {repeat + 1}: {way}: {seconds[way][-1]:.1f} s", flush=True)
    base = statistics.median(seconds["graceful"])
    print("\n| stop of the Ray head | median s | min-max s | ratio |\n|---|---|---|---|")
    for way, values in seconds.items():
        median = statistics.median(values)
        print(f"| {way} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {median / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
