"""Peak memory of this process and the time of a call, as the benchmarks and the demo report them."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def peak_memory_bytes(device: str = "cpu") -> int:
    """The process's peak memory: on a GPU what torch allocated there, on the CPU the peak resident set.

    Linux's ru_maxrss carries the parent's peak across fork and exec (a parent that built a backbone would set every
    child's figure); VmHWM belongs to the process's own address space, so it is read where Linux has it.
    """
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def timed(call: Callable[[], object], device: str) -> float:
    """Seconds one call takes; on a GPU, until the work it queued is done."""
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def paired(
    first: Callable[[], object], second: Callable[[], object], steps: int, device: str
) -> tuple[float, float, float]:
    """The medians of each call's time and of their ratio (first over second), the two called in alternation `steps`
    times, so that the drift of a shared machine falls on both sides of every ratio. Warm both up before."""
    pairs = [(timed(first, device), timed(second, device)) for _ in range(steps)]
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(a / b for a, b in pairs),
    )
