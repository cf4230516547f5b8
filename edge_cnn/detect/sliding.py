"""Sliding-window detection (Dalal & Triggs 2005 style) with greedy non-maximum suppression
(``edge_cnn.box_metrics.nms``, the one NMS of the package)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from edge_cnn.box_metrics import nms
from edge_cnn.errors import EdgeCNNError


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


def pyramid_scales(image_size: tuple[int, int], window: tuple[int, int], scale_step: float, max_levels: int = 32) -> list[float]:
    """Downscale factors 1, 1/step, 1/step^2, ... while the image still holds one window.

    ``image_size`` and ``window`` are (height, width).
    """
    if scale_step <= 1.0:
        raise EdgeCNNError(f"scale step {scale_step} must be greater than 1 (e.g. 1.25)")
    height, width = image_size
    win_h, win_w = window
    if height < win_h or width < win_w:
        raise EdgeCNNError(
            f"image of {height}x{width} is smaller than the {win_h}x{win_w} window: "
            "upscale the image or use a smaller --window"
        )
    scales = []
    scale = 1.0
    while height * scale >= win_h and width * scale >= win_w and len(scales) < max_levels:
        scales.append(scale)
        scale /= scale_step
    return scales


def _offsets(length: int, window: int, step: int) -> list[int]:
    """Window offsets along one axis, the far edge included."""
    offsets = list(range(0, length - window + 1, step))
    if offsets[-1] != length - window:  # cover the bottom and right edges too
        offsets.append(length - window)
    return offsets


def window_boxes(image_size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(N, 2) top-left (y, x) of every window position at one pyramid level, edges included."""
    ys, xs = (_offsets(image_size[i], window[i], stride[i]) for i in (0, 1))
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64)


def _level_size(image_size: tuple[int, int], window: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) of the pyramid level at ``scale``, never below the window."""
    return max(window[0], round(image_size[0] * scale)), max(window[1], round(image_size[1] * scale))


def pyramid_levels(
    image_size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int], scale_step: float, max_windows: int | None = None
) -> tuple[list[float], list[float]]:
    """(kept, skipped) pyramid scales: the finest levels are skipped while the windows of all
    levels exceed ``max_windows``, so an 8000x8000 photo costs what a small one does, at the price
    of its smallest detectable size (the window times 1 / the finest kept scale)."""
    if min(stride) < 1:
        raise EdgeCNNError(f"stride {stride} must be positive")
    scales = pyramid_scales(image_size, window, scale_step)
    counts = [
        len(_offsets(height, window[0], stride[0])) * len(_offsets(width, window[1], stride[1]))
        for height, width in (_level_size(image_size, window, scale) for scale in scales)
    ]
    first = 0
    while max_windows is not None and sum(counts[first:]) > max_windows:
        first += 1
        if first == len(scales):
            raise EdgeCNNError(
                f"even the coarsest pyramid level needs {counts[-1]} windows, over --max-windows {max_windows}: "
                "raise --max-windows or --stride"
            )
    return scales[first:], scales[:first]


def _windows(image: Image.Image, window, stride, scales) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """(scale, window crops (N, h, w, C) uint8, top-left corners) per pyramid level.

    Levels are resized from the finest one searched: the image itself unless ``max_windows`` skipped
    levels, where one downscale first spares resizing the whole of a huge image per level."""

    def resized(picture: Image.Image, scale: float) -> Image.Image:
        level_height, level_width = _level_size((image.height, image.width), window, scale)
        return picture if picture.size == (level_width, level_height) else picture.resize((level_width, level_height), Image.BILINEAR)

    finest = resized(image, scales[0])
    for scale in scales:
        level = np.asarray(resized(finest, scale))
        if level.ndim == 2:
            level = level[:, :, None]
        corners = window_boxes(level.shape[:2], window, stride)
        crops = np.stack([level[y : y + window[0], x : x + window[1]] for y, x in corners])
        yield scale, crops, corners


def detect(
    image: Image.Image,
    score_windows: Callable[[np.ndarray], np.ndarray],
    *,
    window: tuple[int, int],
    stride: tuple[int, int] = (16, 16),
    scale_step: float = 1.25,
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
    for scale, crops, corners in _windows(image, window, stride, scales):
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
