"""The canary job of `orch drill`: trains one step of the sweep's trainable (its first trial, from the code
the laptop shipped), times its checkpoint, then waits for signals and records each one (and checkpoints
again on USR2, timed). A function or a command trainable checkpoints itself: only the signals are recorded.

    python -m cluster.node.drill_canary --sweep CODE/conf/sweeps/NAME.yaml --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

WAIT_S = 600


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    signals = out / f"signals-{os.environ.get('SLURM_RESTART_COUNT', '0')}.jsonl"
    state: dict = {"trainable": None}

    def on_signal(signum: int, _frame: object) -> None:
        arrived = time.time()
        record = {
            "signal": signal.Signals(signum).name,
            "at": arrived,
            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
        }
        _append(signals, record)
        if signum == signal.SIGUSR2 and state["trainable"] is not None:
            with tempfile.TemporaryDirectory(dir=out) as folder:
                began = time.perf_counter()
                state["trainable"].save_checkpoint(folder)
                _append(signals, {"signal": "checkpointed", "seconds": time.perf_counter() - began, "at": time.time()})

    for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT):
        signal.signal(sig, on_signal)
    from cluster.node.shards import materialise
    from orchestrator.kernel.config.loading import load_sweep

    resolved = load_sweep(Path(args.sweep))
    ready: dict = {
        "node": os.environ.get("SLURMD_NODENAME", ""),
        "job_id": os.environ.get("SLURM_JOB_ID", ""),
        "kind": resolved.spec.kind,
        "every_epochs": resolved.sweep.checkpoint.every_epochs,
        "at": time.time(),
    }
    if resolved.spec.kind == "class":
        trials, _ = materialise(resolved, seed=0)
        began = time.perf_counter()
        trainable = resolved.spec.trainable()(config=trials[0].config)
        trainable.train()
        epoch_s = time.perf_counter() - began
        durations, size = [], 0
        for _ in range(3):
            with tempfile.TemporaryDirectory(dir=out) as folder:
                started = time.perf_counter()
                trainable.save_checkpoint(folder)
                durations.append(time.perf_counter() - started)
                size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        state["trainable"] = trainable
        ready.update(checkpoint_s=statistics.median(durations), checkpoint_bytes=size, first_step_s=epoch_s)
    (out / "ready.json").write_text(json.dumps(ready))
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
