"""ROC AUC without scikit-learn."""

from __future__ import annotations

import numpy as np


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count half
    (the Mann-Whitney U statistic, with average ranks)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative example")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average ranks over ties
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
