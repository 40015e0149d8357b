"""MITP's output, and the classification loss written the way `transformers.Trainer` expects it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

IGNORE_INDEX = -100


@dataclass
class MITPOutput(ModelOutput):
    """What an MITP model returns."""

    loss: Optional[torch.Tensor] = None
    """Classification loss, when labels were given."""
    logits: Optional[torch.Tensor] = None
    """(batch, num_labels) class scores, before softmax / sigmoid."""
    image_features: Optional[torch.Tensor] = None
    """(batch, vision width) pooled image features after MITP, before the contrastive projection."""
    text_features: Optional[torch.Tensor] = None
    """(batch, text width) pooled text features after MITP, before the contrastive projection."""


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str,
    num_items_in_batch: Optional[Union[int, torch.Tensor]] = None,
) -> torch.Tensor:
    """Cross-entropy (single-label) or BCE-with-logits (multi-label), summed and divided by the item count.

    `Trainer` passes `num_items_in_batch`, the number of labels over all gradient-accumulation micro-batches and all
    processes, and then neither divides by the accumulation steps nor leaves DDP's averaging uncorrected. A plain
    mean would be scaled wrongly there; sum / num_items_in_batch is exact. Without it, this is the plain mean.
    Single-label targets of -100 are ignored, as in transformers.
    """
    labels = check_labels(labels, logits, problem_type)
    if problem_type == "single_label_classification":
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        count = (labels != IGNORE_INDEX).sum()
    else:
        total = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="sum")
        count = labels.numel()
    if num_items_in_batch is None:
        return total / max(int(count), 1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def check_labels(labels: torch.Tensor, logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Validate labels against the problem type and the number of classes; return them ready for the loss."""
    batch, num_labels = logits.shape
    labels = labels.to(logits.device)
    if problem_type == "single_label_classification":
        if labels.dim() != 1 or labels.shape[0] != batch:
            raise ValueError(
                f"For single_label_classification, labels must be class indices of shape ({batch},), got shape "
                f"{tuple(labels.shape)}. For several labels per sample use problem_type='multi_label_classification'."
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"Single-label labels must be integer class indices, got dtype {labels.dtype}.")
        bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels))]
        if bad.numel():
            raise ValueError(
                f"labels {sorted(set(bad.tolist()))} are out of range: num_labels={num_labels} allows "
                f"0..{num_labels - 1} (and {IGNORE_INDEX} to ignore a sample)."
            )
        return labels.long()
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"For multi_label_classification, labels must be multi-hot of shape ({batch}, {num_labels}), got "
            f"{tuple(labels.shape)}."
        )
    labels = labels.float()
    if ((labels < 0) | (labels > 1)).any():
        raise ValueError("Multi-label labels must lie in [0, 1] (multi-hot targets).")
    return labels
