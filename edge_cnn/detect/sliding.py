"""Sliding-window detection (Dalal & Triggs 2005 style) with greedy non-maximum suppression
(``edge_cnn.box_metrics.nms``, the one NMS of the package). The pyramid and the window positions
live in ``edge_cnn.windows``, shared with training's hard-negative mining."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from PIL import Image

from edge_cnn.box_metrics import nms
from edge_cnn.windows import DEFAULT_SCALE_STEP, DEFAULT_STRIDE, iter_windows, pyramid_levels, pyramid_scales, window_boxes

__all__ = ["Box", "detect", "nms", "pyramid_levels", "pyramid_scales", "window_boxes"]


@dataclasses.dataclass(frozen=True)
class Box:
    """A detection in original-image pixels: top-left corner, size, score, and the class found
    (set by the detector that knows its labels; empty from the bare sliding-window search)."""

    x: int
    y: int
    w: int
    h: int
    score: float
    label: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def detect(
    image: Image.Image,
    score_windows: Callable[[np.ndarray], np.ndarray],
    *,
    window: tuple[int, int],
    stride: tuple[int, int] = DEFAULT_STRIDE,
    scale_step: float = DEFAULT_SCALE_STEP,
    threshold: float = 0.5,
    iou_threshold: float = 0.3,
    batch_size: int = 128,
    max_windows: int | None = None,
) -> list[Box]:
    """Boxes where ``score_windows`` (uint8 crops (N, h, w, C) -> positive-class scores (N,))
    is at least ``threshold``, across the pyramid (its finest levels skipped beyond ``max_windows``
    windows, see ``pyramid_levels``), after NMS; in original-image pixels."""
    scales, _ = pyramid_levels((image.height, image.width), window, stride, scale_step, max_windows)
    found, scores = [], []
    for scale, crops, corners in iter_windows(image, window, stride, scales):
        level_scores = np.concatenate(
            [np.asarray(score_windows(crops[i : i + batch_size]), dtype=np.float64) for i in range(0, len(crops), batch_size)]
        )
        hits = level_scores >= threshold
        for (y, x), score in zip(corners[hits], level_scores[hits]):
            found.append((round(x / scale), round(y / scale), round(window[1] / scale), round(window[0] / scale)))
            scores.append(score)
    if not found:
        return []
    boxes, scores = np.array(found), np.array(scores)
    return [Box(*(int(v) for v in boxes[i]), float(scores[i])) for i in nms(boxes, scores, iou_threshold)]
