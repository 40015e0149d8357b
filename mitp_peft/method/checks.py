"""Checks on tensor values that never stall an accelerator.

Reading a value back from a GPU (`bool(tensor)`, `.item()`, `.tolist()`) waits for every queued kernel, and under
`torch.compile` it breaks the graph. So a check of values runs as a device-side assertion
(`torch._assert_async`) on accelerators and while compiling, and as a plain Python check, with the offending values
in the message, only where reading them costs nothing: eager mode on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def require(condition: torch.Tensor, message: str, details: Callable[[], str] = lambda: "") -> None:
    """Raise ValueError(message + details()) unless `condition` (a bool tensor) holds everywhere."""
    condition = condition.all()
    if condition.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(condition):
            raise ValueError(message + details())
    else:
        torch._assert_async(condition, message)
