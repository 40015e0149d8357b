"""Accuracy of class scores, as an `evaluate` module that loads offline (shipped with mitp-peft)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Share of samples whose highest-scoring class is the label; labels of -100 are ignored."
_KWARGS = """
Args:
    predictions: (samples, classes) scores (logits or probabilities).
    references: (samples,) class indices; -100 marks a sample to ignore.
Returns:
    accuracy: float in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references) -> dict:
        scores, labels = np.asarray(predictions), np.asarray(references)
        keep = labels != -100
        return {"accuracy": float((scores.argmax(-1)[keep] == labels[keep]).mean())}
