"""F1-macro and F1-micro of multi-label scores, as an `evaluate` module that loads offline (shipped with mitp-peft).

MM-IMDB's metrics: every label whose sigmoid probability reaches `threshold` is predicted. F1-macro is the mean over
labels (a label without positives nor predictions counts as 0); F1-micro pools all decisions.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "F1-macro and F1-micro of multi-label logits, predicting labels whose sigmoid reaches a threshold."
_KWARGS = """
Args:
    predictions: (samples, labels) logits.
    references: (samples, labels) multi-hot targets.
    threshold: probability at or above which a label is predicted (default 0.5).
Returns:
    f1_macro, f1_micro: floats in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MultiLabelF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, threshold: float = 0.5) -> dict:
        predicted = 1 / (1 + np.exp(-np.asarray(predictions))) >= threshold
        truth = np.asarray(references) >= 0.5
        tp = (predicted & truth).sum(0)
        fp = (predicted & ~truth).sum(0)
        fn = (~predicted & truth).sum(0)
        per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
        return {"f1_macro": float(per_label.mean()), "f1_micro": float(micro)}
