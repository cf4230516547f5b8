"""A detection export (``--task detect``) as a detector: the runtime's letterboxing, numpy decoding and
NMS (``Predictor.detect``), its boxes as ``Box`` for the JSON and annotated PNG that ``detect_files`` writes."""

from __future__ import annotations

from typing import Any

from edge_cnn.detect.sliding import Box
from edge_cnn.errors import EdgeCNNError


class BoxDetector:
    """Runs ``predictor`` (an ``edge_cnn.runtime.Predictor`` of a detection export) on whole images.

    ``positive``: keep only boxes of that label (None: every label); ``threshold`` and ``iou_threshold``
    default to the manifest's decoding."""

    def __init__(self, predictor: Any, positive: str | None = None, threshold: float | None = None,
                 iou_threshold: float | None = None):
        labels = list(predictor.labels)
        if positive is not None and positive not in labels:
            raise EdgeCNNError(f"class {positive!r} is not one of the model's labels {labels}: pass --positive LABEL")
        self.predictor, self.positive = predictor, positive
        self.threshold, self.iou_threshold = threshold, iou_threshold

    def detect(self, image: Any) -> list[Box]:
        found = self.predictor.detect(image, threshold=self.threshold, iou_threshold=self.iou_threshold)
        return [Box(round(b["x"]), round(b["y"]), round(b["w"]), round(b["h"]), b["score"], b["label"])
                for b in found if self.positive is None or b["label"] == self.positive]

    def cap_warning(self, image: Any, name: str) -> None:
        """Nothing is capped: the whole image is one letterboxed input."""
        return None
