"""Accuracy, shipped with the scripts so that ``evaluate.load(path)`` works offline (the Hub's metric scripts are
out of reach there)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy: the fraction of predictions equal to the references (optionally weighted)."
_KWARGS = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): true labels.
    sample_weight (list of float, optional): weight of each example.
Returns:
    accuracy (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, sample_weight=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        weights = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        return {"accuracy": float(np.sum(weights * (predictions == references)) / np.sum(weights))}
