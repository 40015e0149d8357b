"""Peak memory of this process, as the benchmarks and the demo report it."""

from __future__ import annotations

import resource
import sys
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
