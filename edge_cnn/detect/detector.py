"""A window classifier from the embedded runtime turned into a detector, plus annotated images."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edge_cnn.detect.sliding import Box, detect, pyramid_levels
from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.io import atomic_path, output_stems, write_json
from edge_cnn.preprocess import to_pil
from edge_cnn.windows import DEFAULT_POSITIVE, DEFAULT_SCALE_STEP, DEFAULT_STRIDE


class PedestrianDetector:
    """Slides ``predictor`` (an ``edge_cnn.runtime.Predictor``) over an image pyramid.

    The window defaults to the model's input size (HxW 128x64 for the pedestrian recipe, the
    training windows' own size), so crops reach the model as they are cut, with no resize; each
    window goes through the manifest's ``PreprocessSpec`` inside the predictor, which resizes a
    window of another ``window`` size to the input size. Beyond ``max_windows`` windows per image
    the finest pyramid levels are skipped (see ``pyramid_levels``).
    """

    def __init__(
        self,
        predictor: Any,
        positive: str = DEFAULT_POSITIVE,
        window: tuple[int, int] | None = None,
        stride: tuple[int, int] = DEFAULT_STRIDE,
        scale_step: float = DEFAULT_SCALE_STEP,
        threshold: float = 0.5,
        iou_threshold: float = 0.3,
        batch_size: int = 128,
        max_windows: int | None = None,
    ):
        labels = list(predictor.labels)
        if positive not in labels:
            raise EdgeCNNError(f"class {positive!r} is not one of the model's labels {labels}: pass --positive LABEL")
        spec = predictor.spec
        self.predictor = predictor
        self.positive, self.positive_index = positive, labels.index(positive)
        self.window = window or (spec.height, spec.width)
        self.options = dict(stride=stride, scale_step=scale_step, threshold=threshold, iou_threshold=iou_threshold,
                            batch_size=batch_size, max_windows=max_windows)

    def _score(self, crops: np.ndarray) -> np.ndarray:
        return self.predictor.probabilities(crops)[:, self.positive_index]

    def detect(self, image: Any) -> list[Box]:
        pil = to_pil(image).convert("RGB" if self.predictor.spec.color == "rgb" else "L")
        return [dataclasses.replace(box, label=self.positive)
                for box in detect(pil, self._score, window=self.window, **self.options)]

    def cap_warning(self, image: Image.Image, name: str) -> str | None:
        """What ``max_windows`` cost on this image (the levels skipped, the people then too small
        to be found), or None when the whole pyramid was searched."""
        options = self.options
        kept, skipped = pyramid_levels((image.height, image.width), self.window, options["stride"], options["scale_step"],
                                       options["max_windows"])
        if not skipped:
            return None
        smallest = "x".join(str(round(side / kept[0])) for side in self.window)
        return (
            f"image {name} ({image.height}x{image.width}) has more than --max-windows {options['max_windows']} windows: "
            f"skipped its {len(skipped)} finest pyramid level(s), so people under {smallest} pixels are not searched; "
            "raise --max-windows (slower) to search them"
        )


def annotate(image: Any, boxes: list[Box]) -> Image.Image:
    """The image with a labelled rectangle per box."""
    canvas = to_pil(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for box in boxes:
        draw.rectangle([box.x, box.y, box.x + box.w - 1, box.y + box.h - 1], outline=(255, 40, 40), width=2)
        draw.text((box.x + 2, box.y + 1), f"{box.score:.2f}", fill=(255, 255, 0))
    return canvas


def detect_files(detector: PedestrianDetector, paths: list[Path], out: Path) -> tuple[list[dict], list[dict]]:
    """Detect in each image, writing ``<stem>.json`` and ``<stem>.png`` under ``out`` (stems from
    ``output_stems``, so no result overwrites another).

    Returns (results, errors); an unreadable image, or one the pyramid cannot search, is an error
    entry, not the end of the run. A result whose pyramid was capped carries a ``warning``.
    """
    results, errors = [], []
    for path, stem in zip(paths, output_stems(paths)):
        try:
            image = to_pil(path)
            boxes = detector.detect(image)
        except ImageError as exc:
            errors.append({"path": str(path), "error": str(exc)})
            continue
        except EdgeCNNError as exc:
            errors.append({"path": str(path), "error": f"image {path}: {exc}"})
            continue
        record = {"path": str(path), "boxes": [b.to_dict() for b in boxes]}
        warning = detector.cap_warning(image, str(path))
        if warning:
            record["warning"] = warning
        write_json(out / f"{stem}.json", record)
        with atomic_path(out / f"{stem}.png") as tmp:
            annotate(image, boxes).save(tmp, format="PNG")
        results.append(record)
    return results, errors
