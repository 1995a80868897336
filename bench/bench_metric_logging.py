"""Metric logging: the asynchronous logger against plain `mlflow.log_metric` calls, and against MLflow's own
batched (`log_batch`, one call per step) and asynchronous (`mlflow.log_metrics(..., synchronous=False)`) logging.

Both log into the same run of a local `mlflow server` (SQLite, started here on
127.0.0.1 unless --tracking-uri is given). Measures

1. throughput: metric points per second until they are on the server;
2. step-time overhead: a CPU-bound "training step" (~20 ms of matrix products) with
   one batch of metrics logged per step, against the same step without logging.
   Blocks with and without logging are interleaved and medians compared, so a busy
   machine does not bias one side.

    python bench/bench_metric_logging.py [--tracking-uri http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread: the "training step" is one core's work
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from orchestrator.laptop.tracking_server import ServerSpec, start_server, stop_group  # noqa: E402
from orchestrator.tracking.async_logger import AsyncMetricLogger  # noqa: E402
from orchestrator.tracking.client import TrackingClient  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(matrices: tuple[np.ndarray, np.ndarray], repeats: int) -> float:
    a, b = matrices
    total = 0.0
    for _ in range(repeats):
        total += float((a @ b).sum())
    return total


def _calibrate(matrices: tuple[np.ndarray, np.ndarray], target_s: float) -> int:
    _step(matrices, 20)  # warm-up
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        _step(matrices, 20)
        samples.append((time.perf_counter() - began) / 20)
    return max(1, int(target_s / statistics.median(samples)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--metrics-per-step", type=int, default=10)
    parser.add_argument("--plain-calls", type=int, default=200)
    parser.add_argument("--async-points", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=400, help="training steps per side in the overhead test")
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    server_pid = None
    uri = args.tracking_uri
    if uri is None:
        spec = ServerSpec(f"sqlite:///{workdir / 'mlflow.db'}", str(workdir / "artifacts"), port=_free_port())
        began = time.perf_counter()
        server_pid = start_server(spec, workdir / "server").pid
        uri = spec.uri
        print(f"mlflow server at {uri} started in {time.perf_counter() - began:.1f} s")
    try:
        import mlflow

        mlflow.set_tracking_uri(uri)
        client = TrackingClient(uri)
        run_id = client.start_run(client.ensure_experiment("bench-metric-logging"), "bench", {}, {})
        keys = [f"m{i}" for i in range(args.metrics_per_step)]

        # 1. throughput -------------------------------------------------------------------
        with mlflow.start_run(run_id=run_id):
            began = time.perf_counter()
            for i in range(args.plain_calls):
                mlflow.log_metric("plain", float(i), step=i)
            plain_s = time.perf_counter() - began
        plain_rate = args.plain_calls / plain_s

        logger = AsyncMetricLogger(client, workdir / "spool")
        steps = args.async_points // len(keys)
        began = time.perf_counter()
        for step in range(steps):
            logger.log(run_id, {f"async_{k}": float(step) for k in keys}, step=step)
        enqueue_s = time.perf_counter() - began
        assert logger.flush(timeout_s=600), logger.last_error
        async_s = time.perf_counter() - began
        async_rate = steps * len(keys) / async_s
        delivered = len(client.metric_history(run_id, f"async_{keys[0]}"))
        assert delivered == steps, (delivered, steps)

        batch_steps = max(1, args.plain_calls // 4)
        began = time.perf_counter()
        for step in range(batch_steps):
            client.log_metrics(run_id, {f"batch_{k}": float(step) for k in keys}, step)  # MlflowClient.log_batch
        batch_rate = batch_steps * len(keys) / (time.perf_counter() - began)

        with mlflow.start_run(run_id=run_id):
            began = time.perf_counter()
            for step in range(steps):
                mlflow.log_metrics({f"mlasync_{k}": float(step) for k in keys}, step=step, synchronous=False)
            mlflow.flush_async_logging()
            mlflow_async_rate = steps * len(keys) / (time.perf_counter() - began)
        delivered = len(client.metric_history(run_id, f"mlasync_{keys[0]}"))
        assert delivered == steps, (delivered, steps)

        # 2. step-time overhead ------------------------------------------------------------
        rng = np.random.default_rng(0)
        matrices = (rng.standard_normal((160, 160)), rng.standard_normal((160, 160)))
        repeats = _calibrate(matrices, args.step_ms / 1000)
        base, with_async, with_mlflow_async, log_call = [], [], [], []
        mlflow.start_run(run_id=run_id)
        for step in range(args.steps):  # rotate step by step: the machine's load hits every side alike
            sides = [base, with_async, with_mlflow_async]
            for side in sides[step % 3 :] + sides[: step % 3]:
                began = time.perf_counter()
                _step(matrices, repeats)
                if side is with_async:
                    logged = time.perf_counter()
                    logger.log(run_id, {f"ov_{k}": float(step) for k in keys}, step=step)
                    log_call.append(time.perf_counter() - logged)
                elif side is with_mlflow_async:
                    mlflow.log_metrics({f"ovml_{k}": float(step) for k in keys}, step=step, synchronous=False)
                side.append(time.perf_counter() - began)
        mlflow.flush_async_logging()
        mlflow.end_run()
        assert logger.close(timeout_s=120), logger.last_error
        batch_step = []
        for step in range(20):
            began = time.perf_counter()
            _step(matrices, repeats)
            client.log_metrics(run_id, {f"ovbatch_{k}": float(step) for k in keys}, step)
            batch_step.append(time.perf_counter() - began)
        plain_steps = []
        with mlflow.start_run(run_id=run_id):
            for step in range(20):
                began = time.perf_counter()
                _step(matrices, repeats)
                for k in keys:
                    mlflow.log_metric(f"plain_{k}", float(step), step=step)
                plain_steps.append(time.perf_counter() - began)

        base_ms = statistics.median(base) * 1000
        async_ms = statistics.median(with_async) * 1000
        plain_ms = statistics.median(plain_steps) * 1000
        print(f"plain mlflow.log_metric : {plain_rate:10.0f} metrics/s ({args.plain_calls} calls, {plain_s:.1f} s)")
        print(
            f"async logger            : {async_rate:10.0f} metrics/s ({steps * len(keys)} points on the server in {async_s:.1f} s; "
            f"log() itself {enqueue_s / steps * 1e6:.1f} us per {len(keys)}-metric step)"
        )
        print(f"MlflowClient.log_batch  : {batch_rate:10.0f} metrics/s (one call of {len(keys)} per step, {batch_steps} steps)")
        print(f"mlflow async logging    : {mlflow_async_rate:10.0f} metrics/s (log_metrics(synchronous=False), flushed)")
        print(
            f"throughput ratio        : {async_rate / plain_rate:10.1f}x vs log_metric (target >= 20x), "
            f"{async_rate / batch_rate:.1f}x vs log_batch, {async_rate / mlflow_async_rate:.1f}x vs mlflow async"
        )
        print(
            f"log() on the step thread: {statistics.mean(log_call) * 1e6:.1f} us mean, "
            f"{statistics.quantiles(log_call, n=100)[98] * 1e6:.1f} us p99 = {statistics.mean(log_call) * 1000 / base_ms * 100:.3f} % of a step"
        )
        print(
            f"training step (median)  : {base_ms:.2f} ms bare, {async_ms:.2f} ms with async logger "
            f"({(async_ms / base_ms - 1) * 100:+.2f} %, target < 1 %), {plain_ms:.2f} ms with plain log_metric "
            f"({(plain_ms / base_ms - 1) * 100:+.0f} %), {len(keys)} metrics per step"
        )
        mlflow_async_ms = statistics.median(with_mlflow_async) * 1000
        batch_ms = statistics.median(batch_step) * 1000
        print(
            f"                          {mlflow_async_ms:.2f} ms with mlflow async ({(mlflow_async_ms / base_ms - 1) * 100:+.2f} %), "
            f"{batch_ms:.2f} ms with log_batch per step ({(batch_ms / base_ms - 1) * 100:+.0f} %)"
        )
    finally:
        if server_pid is not None:
            stop_group(server_pid)


if __name__ == "__main__":
    main()
