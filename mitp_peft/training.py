"""One optimization loop for the small fit the package makes itself (the warm start of the head)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from transformers.utils import logging


def linear_decay(total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of each step: from 1 down to 0 at `total_steps`."""
    return lambda step: max(0.0, 1 - step / max(1, total_steps))


def fit(
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Any],
    loss_of: Callable[[Any], torch.Tensor],
    total_steps: int,
    schedule: Callable[[int], float],
    description: str | None = None,
) -> torch.Tensor:
    """Take `total_steps` steps of `optimizer`, one per batch of `batches` (which must hold that many), on
    `loss_of(batch)`, the learning rate times `schedule(step)`.

    Returns the losses of every step, detached, as one tensor on their device: nothing is read back to the host while
    training runs. `description` shows a progress bar (transformers' `tqdm`, silenced by its
    `disable_progress_bar`).
    """
    rates = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
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
