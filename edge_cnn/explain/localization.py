"""Heat over a folder: the mean heatmap and how much of the heat falls inside a known box.

The localisation check: on pedestrian windows the person stands in the central band, so
if the model looks at the person (not the background or the photo source) the share of
heat inside the band is clearly above the band's share of the image area.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.explain.methods import make_explainer
from edge_cnn.keras import keras
from edge_cnn.preprocess import PreprocessSpec


@dataclasses.dataclass(frozen=True)
class Box:
    """A box in relative coordinates: x0, y0 (top-left) to x1, y1 (bottom-right), 0..1."""

    x0: float
    y0: float
    x1: float
    y1: float
    name: str = "box"

    def __post_init__(self) -> None:
        if not (0.0 <= self.x0 < self.x1 <= 1.0 and 0.0 <= self.y0 < self.y1 <= 1.0):
            raise EdgeCNNError(f"box {self.x0},{self.y0},{self.x1},{self.y1} must satisfy 0 <= x0 < x1 <= 1 "
                               "and 0 <= y0 < y1 <= 1 (relative coordinates)")

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels, end-exclusive, at least one pixel wide."""
        x0, x1 = round(self.x0 * width), max(round(self.x0 * width) + 1, round(self.x1 * width))
        y0, y1 = round(self.y0 * height), max(round(self.y0 * height) + 1, round(self.y1 * height))
        return x0, y0, x1, y1

    def mask(self, height: int, width: int) -> np.ndarray:
        x0, y0, x1, y1 = self.pixels(height, width)
        inside = np.zeros((height, width), dtype=bool)
        inside[y0:y1, x0:x1] = True
        return inside


# Pedestrian windows (INRIA-style 64x128 crops): the person stands upright in the middle,
# about half the window wide and with ~10% margin above the head and below the feet.
CENTER_BAND = Box(0.25, 0.10, 0.75, 0.90, "center-band")
BOXES = {CENTER_BAND.name: CENTER_BAND}


def parse_box(text: str | None) -> Box | None:
    """'center-band' or 'x0,y0,x1,y1' (relative) -> Box; None -> None."""
    if text is None:
        return None
    if text in BOXES:
        return BOXES[text]
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise EdgeCNNError(f"box {text!r} is neither {', '.join(BOXES)} nor x0,y0,x1,y1 in relative coordinates "
                           "(e.g. 0.25,0.1,0.75,0.9)") from None
    return Box(x0, y0, x1, y1, text)


def heat_share(heatmap: np.ndarray, box: Box) -> float | None:
    """Fraction of the total heat inside the box (None for an all-zero map)."""
    total = float(np.sum(heatmap))
    if total <= 0:
        return None
    return float(np.sum(heatmap[box.mask(*heatmap.shape)]) / total)


def area_share(box: Box, height: int, width: int) -> float:
    """Fraction of the image area inside the box: the heat share of a uniform map."""
    return float(box.mask(height, width).mean())


def share_ceiling(box: Box, size: tuple[int, int], resolution: tuple[int, int]) -> float | None:
    """The heat share of an ideal map (1 in the box, 0 outside) seen at a layer's resolution:
    area-averaged to (h, w), then upsampled and scaled like a heatmap. The best a map of that
    layer can score: a 4x2 map (stride 32 at 128x64) cannot resolve a central band's width."""
    from edge_cnn.explain.graph import scale_maps, upsample
    from edge_cnn.keras import tf

    mask = box.mask(*size).astype(np.float32)[None, :, :, None]
    coarse = tf.image.resize(mask, resolution, method="area").numpy()[..., 0]
    return heat_share(scale_maps(upsample(coarse, size))[0], box)


@dataclasses.dataclass
class HeatSummary:
    method: str
    layer: str
    class_index: int | None
    count: int
    mean_heatmap: np.ndarray
    mean_image: np.ndarray
    failed: list[tuple[str, str]]
    resolution: tuple[int, int]
    box: Box | None = None
    per_image_shares: list[float] = dataclasses.field(default_factory=list)

    @property
    def heat_share(self) -> float | None:
        return heat_share(self.mean_heatmap, self.box) if self.box else None

    @property
    def box_area_share(self) -> float | None:
        return area_share(self.box, *self.mean_heatmap.shape) if self.box else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "layer": self.layer,
            "class_index": self.class_index,
            "images": self.count,
            "map_resolution": list(self.resolution),
            "failed": [{"path": path, "reason": reason} for path, reason in self.failed],
        }
        if self.box:
            height, width = self.mean_heatmap.shape
            data.update(
                box={**dataclasses.asdict(self.box), "pixels_x0_y0_x1_y1": self.box.pixels(height, width)},
                heat_share=self.heat_share,
                box_area_share=self.box_area_share,
                heat_to_area_ratio=(self.heat_share / self.box_area_share) if self.heat_share is not None else None,
                heat_share_per_image_mean=float(np.mean(self.per_image_shares)) if self.per_image_shares else None,
                heat_share_ceiling=share_ceiling(self.box, (height, width), self.resolution),
            )
        return data


def _load(spec: PreprocessSpec, items: Sequence, failed: list[tuple[str, str]]) -> list[np.ndarray]:
    loaded = []
    for item in items:
        try:
            loaded.append(spec.load_image(item))
        except ImageError as exc:
            failed.append((str(item), str(exc)))
    return loaded


def summary(
    model: keras.Model,
    items: Sequence,
    spec: PreprocessSpec,
    box: Box | str | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    class_index: int | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> HeatSummary:
    """Mean heatmap over ``items`` (paths or images, through ``spec``) and, with a box, the heat share.

    Unreadable images are listed in ``failed`` and skipped; the rest are still summarised.
    """
    if not items:
        raise EdgeCNNError("no images to summarise: the folder holds no image files")
    box = parse_box(box) if isinstance(box, str) else box
    explainer = make_explainer(model, method, layer)
    failed: list[tuple[str, str]] = []
    heat_sum = image_sum = None
    shares: list[float] = []
    count = 0
    for start in range(0, len(items), batch_size):
        pixels = _load(spec, items[start:start + batch_size], failed)
        if pixels:
            stack = np.stack(pixels)
            heat = explainer(spec.normalize(stack), class_index)
            maps, resolution = heat.maps, heat.resolution
            heat_sum = maps.sum(axis=0) if heat_sum is None else heat_sum + maps.sum(axis=0)
            image_sum = stack.sum(axis=0, dtype=np.float64) + (0 if image_sum is None else image_sum)
            count += len(maps)
            if box:
                shares += [s for s in (heat_share(m, box) for m in maps) if s is not None]
        if on_batch:
            on_batch(min(start + batch_size, len(items)))
    if count == 0:
        raise EdgeCNNError(f"none of the {len(items)} images could be read (first: {failed[0][1]})")
    mean_heatmap = (heat_sum / count).astype(np.float32)
    mean_image = np.rint(image_sum / count).astype(np.uint8)
    return HeatSummary(method, explainer.layer, class_index, count, mean_heatmap, mean_image, failed,
                       resolution, box, shares)
