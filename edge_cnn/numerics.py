"""Numbers in and out of a model: int8 quantization, dequantization, softmax, L2 normalisation.

Numpy only, below every stage: export's parity check, bench's inputs and the runtime compute
them the same way. Quantization follows TFLite's affine scheme ``real = scale * (q - zero_point)``
and its rounding (half away from zero), so an int8 model is fed exactly what the converter's
own quantize op would have computed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


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


def unit_embeddings(embed: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                    mirrored: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised ``embed(batch)``; with ``mirrored`` (the same images flipped left-right), face
    verification's flip test: the two unit vectors added and normalised again, one vector in the same space.
    The runtime and the Keras model of a run embed through this one function, so their scores compare."""
    vectors = l2_normalize(embed(batch))
    return vectors if mirrored is None else l2_normalize(vectors + l2_normalize(embed(mirrored)))
