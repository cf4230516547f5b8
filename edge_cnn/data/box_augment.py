"""Box-aware augmentation for detection: every geometric change moves the boxes with the pixels.

A detector sees whole photos, so its augmentation places the photo in the input rather than
jittering a centred crop: scale jitter around the letterbox scale with a random placement (the photo
cropped when it grows past the input, padded with grey when it shrinks), horizontal flips,
brightness and contrast, and three for cheap cameras: grey conversion, blur, and downscale-upscale
(a 2-3x lower resolution brought back to the input size). Numpy and Pillow, no TensorFlow: the
pipeline runs it per image in Python, seeded per epoch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageFilter

from edge_cnn.errors import EdgeCNNError
from edge_cnn.tasks.detect import PAD_VALUE

MIN_VISIBLE = 0.4  # a box cut by the input's edge is kept when this fraction of it is still inside


@dataclasses.dataclass(frozen=True)
class BoxAugment:
    """``zoom``: scale jitter +- fraction of the letterbox scale (with random placement); ``hflip``;
    ``brightness`` +- fraction of 255; ``contrast``: factor 1 +- this; ``grey``, ``blur``, ``downscale``:
    probabilities per image."""

    zoom: float = 0.0
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    grey: float = 0.0
    blur: float = 0.0
    downscale: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.zoom < 1.0:
            raise EdgeCNNError(f"--zoom {self.zoom} must be in [0, 1) for detection (a fraction of the scale)")
        for name in ("grey", "blur", "downscale"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EdgeCNNError(f"--{name} {getattr(self, name)} must be a probability in [0, 1]")


def place(image: Image.Image, boxes: np.ndarray, height: int, width: int, scale: float, offset: tuple[float, float],
          resample: int = Image.BILINEAR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale ``image`` by ``scale`` and paste it at ``offset`` (x, y; negative: cropped) on a grey
    ``height`` x ``width`` canvas -> (uint8 pixels, boxes moved and clipped, which input boxes survived)."""
    new_w, new_h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new(image.mode, (width, height), (PAD_VALUE,) * len(image.getbands()))
    canvas.paste(image.resize((new_w, new_h), resample), (int(round(offset[0])), int(round(offset[1]))))
    moved = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * (new_w / image.width)
    moved[:, 0] += round(offset[0])
    moved[:, 1] += round(offset[1])
    left, top = np.clip(moved[:, 0], 0, width), np.clip(moved[:, 1], 0, height)
    right = np.clip(moved[:, 0] + moved[:, 2], 0, width)
    bottom = np.clip(moved[:, 1] + moved[:, 3], 0, height)
    clipped = np.stack([left, top, right - left, bottom - top], axis=1)
    area = moved[:, 2] * moved[:, 3]
    kept = (clipped[:, 2] * clipped[:, 3]) >= MIN_VISIBLE * np.maximum(area, 1e-9)
    return np.asarray(canvas, dtype=np.uint8), clipped[kept], kept


def augment(image: Image.Image, boxes: np.ndarray, height: int, width: int, config: BoxAugment,
            rng: np.random.Generator, resample: int = Image.BILINEAR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training image -> (uint8 (height, width, C) pixels, its boxes in input pixels, which boxes
    survived), ``config``'s changes drawn from ``rng``."""
    if rng.random() < config.downscale:
        factor = rng.uniform(2.0, 3.0)
        small = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        image = image.resize(small, Image.BILINEAR).resize(image.size, Image.BILINEAR)
    if rng.random() < config.blur:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    if rng.random() < config.grey:
        image = image.convert("L").convert(image.mode)
    scale = min(width / image.width, height / image.height) * rng.uniform(1 - config.zoom, 1 + config.zoom)
    new_w, new_h = image.width * scale, image.height * scale
    offset = (rng.uniform(min(0.0, width - new_w), max(0.0, width - new_w)),
              rng.uniform(min(0.0, height - new_h), max(0.0, height - new_h)))
    pixels, boxes, kept = place(image, boxes, height, width, scale, offset, resample)
    if config.hflip and rng.random() < 0.5:
        pixels = pixels[:, ::-1]
        boxes = boxes.copy()
        boxes[:, 0] = width - boxes[:, 0] - boxes[:, 2]
    if config.brightness or config.contrast:
        factor = rng.uniform(1 - config.contrast, 1 + config.contrast)
        shift = rng.uniform(-config.brightness, config.brightness) * 255.0
        pixels = np.clip((pixels.astype(np.float32) - 128.0) * factor + 128.0 + shift, 0, 255).astype(np.uint8)
    pixels = np.ascontiguousarray(pixels)
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels), boxes, kept
