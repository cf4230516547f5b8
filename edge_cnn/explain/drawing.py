"""Heatmaps drawn on images, and figures saved as PNG.

The colormap is 'inferno': perceptually uniform with monotone lightness, so heat reads
correctly in greyscale and to colour-blind eyes (unlike 'jet' or 'turbo').
"""

from __future__ import annotations

import io
import os

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import write_bytes

COLORMAP = "inferno"


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def as_rgb(original: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) -> uint8 (H, W, 3)."""
    image = np.asarray(original)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise EdgeCNNError(f"cannot draw on an image of shape {np.shape(original)}: use (H, W), (H, W, 1) or (H, W, 3)")
    return image.astype(np.uint8)


def blend(original: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = COLORMAP) -> np.ndarray:
    """(1 - alpha) * image + alpha * colormap(heat): uint8 (H, W, 3)."""
    import matplotlib

    image = as_rgb(original)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != image.shape[:2]:
        raise EdgeCNNError(f"heatmap of shape {heat.shape} does not match the image {image.shape[:2]}")
    colored = matplotlib.colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colored
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def overlay(
    original: np.ndarray,
    heatmap: np.ndarray,
    title: str = "",
    *,
    alpha: float = 0.5,
    colormap: str = COLORMAP,
    box: tuple[int, int, int, int] | None = None,
    image_title: str = "input",
) -> np.ndarray:
    """A figure: the image beside the blended heatmap (with a colour bar), titled; uint8 RGB.

    ``box`` (x0, y0, x1, y1 in pixels) is outlined on the heatmap.
    """
    plt = pyplot()
    image = as_rgb(original)
    figure, (left, right) = plt.subplots(1, 2, figsize=(6.0, 3.6))
    left.imshow(image)
    left.set_title(image_title, fontsize=9)
    right.imshow(blend(image, heatmap, alpha, colormap))
    right.set_title("heat", fontsize=9)
    mappable = plt.cm.ScalarMappable(cmap=colormap, norm=plt.Normalize(0, 1))
    figure.colorbar(mappable, ax=right, fraction=0.046, pad=0.04)
    if box is not None:
        x0, y0, x1, y1 = box
        right.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", lw=1.5))
    for axis in (left, right):
        axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    return figure_to_array(figure)


def figure_to_array(figure) -> np.ndarray:
    """Render a matplotlib figure to uint8 RGB and close it."""
    plt = pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    from PIL import Image

    with Image.open(buffer) as png:
        return np.asarray(png.convert("RGB"))


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 image as PNG atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
