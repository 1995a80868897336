"""The canary job of `orch drill`: trains one step of the sweep's trainable, times its checkpoint,
then waits for signals and records each one (and checkpoints again on USR2, timed).

    python -m cluster.node.drill_canary --trainable NAME --config FILE --out DIR
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
    parser.add_argument("--trainable", required=True)
    parser.add_argument("--config", required=True)
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
    from trainables.registry import get_trainable_spec

    spec = get_trainable_spec(args.trainable)
    config = json.loads(Path(args.config).read_text())
    began = time.perf_counter()
    trainable = spec.trainable_class()(config=config)
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
    ready = {
        "checkpoint_s": statistics.median(durations),
        "checkpoint_bytes": size,
        "first_step_s": epoch_s,
        "node": os.environ.get("SLURMD_NODENAME", ""),
        "job_id": os.environ.get("SLURM_JOB_ID", ""),
        "at": time.time(),
    }
    (out / "ready.json").write_text(json.dumps(ready))
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
