"""Numbers in and out of a model: int8 input quantization, output dequantization, softmax, top-k.

Numpy only. Quantization follows TFLite's affine scheme ``real = scale * (q - zero_point)``
and its rounding (half away from zero), so the runtime feeds an int8 model exactly what
the converter's own quantize op would have computed.
"""

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


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float model values -> int8/uint8: ``clip(round(x / scale) + zero_point)``."""
    limits = np.iinfo(np.dtype(dtype))
    scaled = np.asarray(values, dtype=np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded + zero_point, limits.min, limits.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(values, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float32) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): cosine similarity becomes a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


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
