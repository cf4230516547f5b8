"""A classifier's answer: class probabilities -> ``Prediction`` (label, score, top-k). Numpy only."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's answer: the best class, its score (a probability), and the top-k."""

    label: str
    index: int
    score: float
    topk: list[tuple[str, float]]
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (one JSON line of `edgecnn predict --json`)."""
        return {
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "score": self.score,
            "topk": [{"label": label, "score": score} for label, score in self.topk],
        }


def to_predictions(probabilities: np.ndarray, labels: list[str], topk: int, paths: list[str | None]) -> list[Prediction]:
    """Rows of class probabilities -> one ``Prediction`` per row (ties keep the lower class index)."""
    k = max(1, min(int(topk), probabilities.shape[1]))
    results = []
    for row, path in zip(probabilities, paths):
        order = np.argsort(-row, kind="stable")[:k]
        best = int(order[0])
        results.append(
            Prediction(
                label=labels[best],
                index=best,
                score=float(row[best]),
                topk=[(labels[int(i)], float(row[int(i)])) for i in order],
                path=path,
            )
        )
    return results
