"""What the device benchmarks share: the device's name, and a wall-clock timing that waits for CUDA's queue."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def device_name(device: str) -> str:
    """The GPU's name on `cuda`, else the CPU's model name."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(fn: Callable[[], Any], device: str) -> float:
    """Seconds `fn` takes; on CUDA from an empty queue to an empty queue (synchronize before and after)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
