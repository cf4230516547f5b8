"""A window classifier from the embedded runtime turned into a detector, plus annotated images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edge_cnn.detect.sliding import Box, detect
from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, write_json
from edge_cnn.preprocess import to_pil


class PedestrianDetector:
    """Slides ``predictor`` (an ``edge_cnn.runtime.Predictor``) over an image pyramid.

    The window defaults to the model's input size (HxW 128x64 for the pedestrian recipe, the
    training windows' own size), so crops reach the model as they are cut, with no resize; each
    window goes through the manifest's ``PreprocessSpec`` inside the predictor, which resizes a
    window of another ``window`` size to the input size.
    """

    def __init__(
        self,
        predictor: Any,
        positive: str = "person",
        window: tuple[int, int] | None = None,
        stride: tuple[int, int] = (16, 16),
        scale_step: float = 1.25,
        threshold: float = 0.5,
        iou_threshold: float = 0.3,
        batch_size: int = 128,
    ):
        labels = list(predictor.labels)
        if positive not in labels:
            raise EdgeCNNError(f"class {positive!r} is not one of the model's labels {labels}: pass --positive LABEL")
        spec = predictor.spec
        self.predictor = predictor
        self.positive_index = labels.index(positive)
        self.window = window or (spec.height, spec.width)
        self.options = dict(stride=stride, scale_step=scale_step, threshold=threshold, iou_threshold=iou_threshold, batch_size=batch_size)

    def _score(self, crops: np.ndarray) -> np.ndarray:
        return self.predictor.probabilities(list(crops))[:, self.positive_index]

    def detect(self, image: Any) -> list[Box]:
        pil = to_pil(image).convert("RGB" if self.predictor.spec.color == "rgb" else "L")
        return detect(pil, self._score, window=self.window, **self.options)


def annotate(image: Any, boxes: list[Box]) -> Image.Image:
    """The image with a labelled rectangle per box."""
    canvas = to_pil(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for box in boxes:
        draw.rectangle([box.x, box.y, box.x + box.w - 1, box.y + box.h - 1], outline=(255, 40, 40), width=2)
        draw.text((box.x + 2, box.y + 1), f"{box.score:.2f}", fill=(255, 255, 0))
    return canvas


def detect_files(detector: PedestrianDetector, paths: list[Path], out: Path) -> tuple[list[dict], list[dict]]:
    """Detect in each image, writing ``<stem>.json`` and ``<stem>.png`` into ``out``.

    Returns (results, errors); an unreadable image is an error entry, not the end of the run.
    """
    results, errors = [], []
    for path in paths:
        try:
            image = to_pil(path)
            boxes = detector.detect(image)
        except EdgeCNNError as exc:
            errors.append({"path": str(path), "error": str(exc)})
            continue
        record = {"path": str(path), "boxes": [b.to_dict() for b in boxes]}
        write_json(out / f"{path.stem}.json", record)
        with atomic_path(out / f"{path.stem}.png") as tmp:
            annotate(image, boxes).save(tmp, format="PNG")
        results.append(record)
    return results, errors
