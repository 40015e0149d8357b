"""Metrics of the paper's tasks on `evaluate`: accuracy; F1-macro and F1-micro for multi-label.

The metric scripts of the hub (`evaluate.load("accuracy")`) need the network; these modules ship inside the package
(`mitp_peft/metric_modules/`) and load offline with the same API: `load_metric("accuracy").compute(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

MODULES = Path(__file__).resolve().parent / "metric_modules"
METRICS = {"accuracy": "accuracy.py", "multi_label_f1": "multi_label_f1.py"}


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """One of mitp-peft's `evaluate` modules (`accuracy`, `multi_label_f1`), loaded from the package, offline."""
    if name not in METRICS:
        raise ValueError(f"mitp-peft ships the metrics {sorted(METRICS)}, not {name!r}.")
    return evaluate.load(str(MODULES / METRICS[name]))


def task_metrics(
    logits: np.ndarray, labels: np.ndarray, problem_type: str, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy (single-label) or F1-macro and F1-micro (multi-label) of a whole evaluation set."""
    labels = np.asarray(labels)
    if problem_type == "multi_label_classification" and labels.ndim == 1:
        raise ValueError(
            f"compute_metrics('multi_label_classification') got labels of shape {labels.shape}: one class index per "
            "sample, as single-label data has. Use compute_metrics('single_label_classification'), or give multi-hot "
            "labels (MITPCollator(num_labels=...) makes them from label lists)."
        )
    if problem_type == "single_label_classification" and labels.ndim == 2:
        raise ValueError(
            f"compute_metrics('single_label_classification') got labels of shape {labels.shape}: multi-hot rows. Use "
            "compute_metrics('multi_label_classification')."
        )
    if problem_type == "multi_label_classification":
        return load_metric("multi_label_f1").compute(predictions=logits, references=labels, threshold=threshold)
    return load_metric("accuracy").compute(predictions=logits, references=labels)


def compute_metrics(problem_type: str, threshold: float = 0.5) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer`: accuracy, or F1-macro/micro for multi-label."""

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        # Trainer hands over every output besides the loss: logits come first.
        logits = logits[0] if isinstance(logits, tuple) else logits
        return task_metrics(logits, prediction.label_ids, problem_type, threshold)

    return compute
