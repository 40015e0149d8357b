"""The benchmarks' learning-rate schedule: a linear warm-up, then a linear or cosine decay to zero."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal

import torch

from mitp_peft.training import fit

DECAYS = ("linear", "cosine")


def warmup_then_decay(
    total_steps: int, warmup_steps: int = 0, decay: Literal["linear", "cosine"] = "linear"
) -> Callable[[int], float]:
    """The learning-rate factor of each step: a linear warm-up over `warmup_steps`, then a linear or cosine decay to
    zero at `total_steps`."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 1 - done) if decay == "linear" else 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


def fit_adamw(
    parameters: Iterable[torch.nn.Parameter],
    batches: Iterable,
    loss_of: Callable,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    decay: Literal["linear", "cosine"] = "linear",
    weight_decay: float = 0.0,
    description: str | None = None,
) -> torch.Tensor:
    """The package's loop (`mitp_peft.training.fit`) with AdamW and `warmup_then_decay`."""
    optimizer = torch.optim.AdamW(list(parameters), lr=learning_rate, weight_decay=weight_decay)
    return fit(
        optimizer, batches, loss_of, total_steps, warmup_then_decay(total_steps, warmup_steps, decay), description
    )
