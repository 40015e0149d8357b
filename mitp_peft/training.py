"""One optimization loop for the small fits the package makes itself (the warm start of the head), shared with the
benchmarks: AdamW over a stream of batches, with a warm-up and a decay of the learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn
from transformers.utils import logging

DECAYS = ("linear", "cosine")


def schedule(total_steps: int, warmup_steps: int = 0, decay: Literal["linear", "cosine"] = "linear") -> Callable:
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


def fit(
    parameters: Iterable[nn.Parameter],
    batches: Iterable[Any],
    loss_of: Callable[[Any], torch.Tensor],
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    decay: Literal["linear", "cosine"] = "linear",
    weight_decay: float = 0.0,
    description: str | None = None,
) -> torch.Tensor:
    """Take `total_steps` AdamW steps, one per batch of `batches` (which must hold that many), on `loss_of(batch)`.

    Returns the losses of every step, detached, as one tensor on their device: nothing is read back to the host while
    training runs. `description` shows a progress bar (transformers' `tqdm`, silenced by its
    `disable_progress_bar`).
    """
    parameters = list(parameters)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    rates = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(total_steps, warmup_steps, decay))
    losses = []
    progress = logging.tqdm(total=total_steps, desc=description, unit="step", disable=description is None)
    for batch in batches:
        if len(losses) == total_steps:
            break
        loss = loss_of(batch)
        loss.backward()
        optimizer.step()
        rates.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        progress.update()
    progress.close()
    if len(losses) < total_steps:
        raise ValueError(f"fit took {total_steps} steps but the batches ran out after {len(losses)}.")
    return torch.stack(losses)
