"""F1 score (macro by default), shipped with the scripts so that ``evaluate.load(path)`` works offline."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "F1 = 2 TP / (2 TP + FP + FN) per class. 'macro' averages it over the classes (those in labels, else every "
    "class seen in predictions or references); 'micro' pools the counts; 'weighted' weights by class support."
)
_KWARGS = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): true labels.
    labels (list of int, optional): the classes to average over.
    average (str): 'macro' (default), 'micro' or 'weighted'.
Returns:
    f1 (float): in [0, 1]. A class never predicted and never present scores 0 when it is listed in labels.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None, average="macro"):
        predictions, references = np.asarray(predictions), np.asarray(references)
        classes = np.unique(np.concatenate([predictions, references])) if labels is None else np.asarray(labels)
        tp = np.array([np.sum((predictions == c) & (references == c)) for c in classes], dtype=float)
        fp = np.array([np.sum((predictions == c) & (references != c)) for c in classes], dtype=float)
        fn = np.array([np.sum((predictions != c) & (references == c)) for c in classes], dtype=float)
        if average == "micro":
            denominator = 2 * tp.sum() + fp.sum() + fn.sum()
            return {"f1": float(2 * tp.sum() / denominator) if denominator else 0.0}
        denominator = 2 * tp + fp + fn
        per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        if average == "macro":
            return {"f1": float(per_class.mean())}
        if average == "weighted":
            support = tp + fn
            return {"f1": float(np.sum(per_class * support) / support.sum()) if support.sum() else 0.0}
        raise ValueError(f"average must be 'macro', 'micro' or 'weighted', got {average!r}")
