"""The classification loss, written the way `transformers.Trainer` expects it, and the checks of the labels."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from .checks import require

IGNORE_INDEX = -100


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
        count = torch.tensor(labels.numel(), device=labels.device)
    if num_items_in_batch is None:
        return total / count.clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def as_label_tensor(labels: Any, label2id: Optional[dict[str, int]]) -> torch.Tensor:
    """A Python list of class indices or multi-hot rows as a tensor; class names are refused with the fix."""
    flat = labels if not labels or not isinstance(labels[0], (list, tuple)) else [v for row in labels for v in row]
    names = [value for value in flat if isinstance(value, str)]
    if names:
        raise ValueError(
            f"labels are class indices, got class names such as {names[0]!r}. Map names to indices with the "
            f"adapter's label2id ({label2id}): labels=[label2id[name] for name in names]."
        )
    return torch.as_tensor(labels)


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
        valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < num_labels))
        require(
            valid,
            f"labels are out of range: num_labels={num_labels} allows 0..{num_labels - 1} (and {IGNORE_INDEX} to "
            "ignore a sample).",
            lambda: f" Got {sorted(set(labels[~valid].tolist()))}.",
        )
        return labels.long()
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"For multi_label_classification, labels must be multi-hot of shape ({batch}, {num_labels}), got "
            f"{tuple(labels.shape)}."
        )
    labels = labels.float()
    require((labels >= 0) & (labels <= 1), "Multi-label labels must lie in [0, 1] (multi-hot targets).")
    return labels
