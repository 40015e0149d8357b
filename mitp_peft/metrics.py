"""Metrics of the paper's tasks, offline (no hub metric scripts): accuracy; F1-macro and F1-micro for multi-label."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Share of samples whose highest-scoring class is the label; labels of -100 are ignored."""
    keep = labels != -100
    return {"accuracy": float((logits.argmax(-1)[keep] == labels[keep]).mean())}


def multi_label_f1(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """F1-macro (mean over labels, a label without positives nor predictions counts as 0) and F1-micro (pooled),
    predicting every label whose sigmoid probability reaches `threshold`."""
    predicted = 1 / (1 + np.exp(-logits)) >= threshold
    truth = labels >= 0.5
    tp = (predicted & truth).sum(0)
    fp = (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return {"f1_macro": float(per_label.mean()), "f1_micro": float(micro)}


def compute_metrics(problem_type: str, threshold: float = 0.5) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer`: accuracy, or F1-macro/micro for multi-label."""

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        # Trainer hands over every output besides the loss: logits come first.
        logits = logits[0] if isinstance(logits, tuple) else logits
        if problem_type == "multi_label_classification":
            return multi_label_f1(logits, prediction.label_ids, threshold)
        return accuracy(logits, prediction.label_ids)

    return compute
