"""The sliding window's image pyramid and window positions: pure numpy and PIL, below every stage.

``edgecnn detect`` (``edge_cnn.detect.sliding``) scores these windows with the embedded runtime, and
``edgecnn train --hard-negatives`` (``edge_cnn.train.hard_negatives``) with the Keras model it just
trained, so the windows mined in training are exactly the ones the detector will see.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import Image

from edge_cnn.errors import EdgeCNNError

# The window classifier's defaults (``edgecnn detect``'s flags): the class that counts as a detection,
# the window step, the pyramid's downscale factor per level, and the windows per image beyond which the
# finest levels are skipped. At the defaults (128x64 window) a 640x480 frame has 1,922 windows,
# 1920x1080 18,112, 3840x2160 80,737 and 8000x8000 670,717 (which ran for over two minutes): the cap
# leaves frames up to full HD whole and bounds the time of any image.
DEFAULT_POSITIVE = "person"
DEFAULT_STRIDE = (16, 16)
DEFAULT_SCALE_STEP = 1.25
DEFAULT_MAX_WINDOWS = 50_000


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


def level_size(image_size: tuple[int, int], window: tuple[int, int], scale: float) -> tuple[int, int]:
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
        for height, width in (level_size(image_size, window, scale) for scale in scales)
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


def pyramid_images(image: Image.Image, window: tuple[int, int], scales: list[float]) -> Iterator[tuple[float, np.ndarray]]:
    """(scale, level pixels (H, W, C) uint8) per pyramid level of ``scales``.

    Levels are resized from the finest one searched: the image itself unless ``max_windows`` skipped
    levels, where one downscale first spares resizing the whole of a huge image per level."""

    def resized(picture: Image.Image, scale: float) -> Image.Image:
        level_height, level_width = level_size((image.height, image.width), window, scale)
        return picture if picture.size == (level_width, level_height) else picture.resize((level_width, level_height), Image.BILINEAR)

    finest = resized(image, scales[0])
    for scale in scales:
        level = np.asarray(resized(finest, scale))
        yield scale, (level[:, :, None] if level.ndim == 2 else level)


def iter_windows(image: Image.Image, window, stride, scales) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """(scale, window crops (N, h, w, C) uint8, top-left corners (N, 2) as (y, x)) per pyramid level;
    a corner (y, x) at ``scale`` is the box (x / scale, y / scale, w / scale, h / scale) of the image."""
    for scale, level in pyramid_images(image, window, scales):
        corners = window_boxes(level.shape[:2], window, stride)
        crops = np.stack([level[y : y + window[0], x : x + window[1]] for y, x in corners])
        yield scale, crops, corners
