"""``PreprocessSpec``: the one definition of how an image becomes a model input.

Written once by training (``preprocess.json`` in the run directory), copied into the
export manifest, and used unchanged by calibration, parity checks, benchmark inputs
and the embedded runtime. Numpy and Pillow only: the runtime imports it without
TensorFlow. ``normalize`` uses plain arithmetic, so the same method also works on
TensorFlow tensors inside a ``tf.data`` pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_cnn.errors import EdgeCNNError, ImageError

COLOR_CHANNELS = {"rgb": 3, "grayscale": 1}
LAYOUTS = ("NHWC", "NCHW")
RESAMPLING = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}
# Decoding more pixels than this is refused per image (a 388 KB PNG can hold 20000x20000 pixels);
# ``$EDGECNN_MAX_IMAGE_PIXELS`` overrides it.
MAX_IMAGE_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """Input size, colour, normalization and layout of a model.

    ``x = (pixel * scale - mean) / std`` per channel, pixels in 0..255.
    """

    height: int
    width: int
    color: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NHWC"
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        if self.color not in COLOR_CHANNELS:
            raise EdgeCNNError(f"preprocess color {self.color!r} is unknown: use one of {sorted(COLOR_CHANNELS)}")
        if self.layout not in LAYOUTS:
            raise EdgeCNNError(f"preprocess layout {self.layout!r} is unknown: use one of {list(LAYOUTS)}")
        if self.resize not in RESAMPLING:
            raise EdgeCNNError(f"preprocess resize {self.resize!r} is unknown: use one of {sorted(RESAMPLING)}")
        if int(self.height) < 1 or int(self.width) < 1:
            raise EdgeCNNError(f"preprocess size {self.height}x{self.width} must be positive")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in np.atleast_1d(getattr(self, name)))
            if len(values) not in (1, self.channels):
                raise EdgeCNNError(f"preprocess {name} has {len(values)} values; {self.color} needs 1 or {self.channels}")
            object.__setattr__(self, name, values)
        if any(s == 0 for s in self.std):
            raise EdgeCNNError("preprocess std must not contain 0")
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "scale", float(self.scale))

    @property
    def channels(self) -> int:
        return COLOR_CHANNELS[self.color]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image as the model takes it (without batch)."""
        if self.layout == "NHWC":
            return (self.height, self.width, self.channels)
        return (self.channels, self.height, self.width)

    # --- images -> arrays -------------------------------------------------
    def load_image(self, image: Any) -> np.ndarray:
        """Decode, convert colour and resize: uint8 array (H, W, C).

        ``image`` is a path, a PIL image, or a uint8/float array (H, W), (H, W, 1|3|4).
        Float arrays are taken as 0..255 pixel values. A uint8 array already at the spec's size and
        colour is returned as it is (what PIL would give back), skipping PIL: the detector's windows
        are cut at the model's input size, and the round trip cost more than the model itself.
        """
        if self.is_ready(image):
            return image if image.ndim == 3 else image[:, :, None]
        pil = to_pil(image)
        pil = pil.convert("RGB" if self.color == "rgb" else "L")
        if pil.size != (self.width, self.height):
            pil = pil.resize((self.width, self.height), RESAMPLING[self.resize])
        array = np.asarray(pil, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        return array

    def is_ready(self, image: Any) -> bool:
        """Whether ``image`` is already what ``load_image`` returns: uint8 pixels at the spec's size and colour."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            return False
        if image.shape[:2] != (self.height, self.width):
            return False
        if self.color == "rgb":
            return image.ndim == 3 and image.shape[2] == 3
        return image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)

    def normalize(self, pixels):
        """uint8 or float pixels (..., H, W, C) -> float32 model values (NHWC).

        Plain arithmetic, so it works on numpy arrays and on tf tensors alike. On numpy it works in place on
        one float copy and skips a zero mean and a unit std (exact: x - 0 and x / 1 are x), since the runtime
        normalizes every window of a photo this way.
        """
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if not isinstance(pixels, np.ndarray):  # a tf tensor inside a tf.data pipeline
            return (_tf_cast_float(pixels) * np.float32(self.scale) - mean) / std
        values = pixels.astype(np.float32)
        values *= np.float32(self.scale)
        if mean.any():
            values -= mean
        if (std != 1).any():
            values /= std
        return values

    def to_layout(self, batch: np.ndarray) -> np.ndarray:
        """NHWC batch -> the model's layout."""
        return batch if self.layout == "NHWC" else np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def mirror(self, batch: np.ndarray) -> np.ndarray:
        """A batch in the model's layout, each image mirrored left-right (the width axis of NHWC or NCHW)."""
        return np.ascontiguousarray(np.flip(batch, axis=2 if self.layout == "NHWC" else 3))

    def __call__(self, images: Any | Sequence[Any]) -> np.ndarray:
        """One image or a list of images -> float32 batch in the model's layout."""
        items = images if isinstance(images, (list, tuple)) else [images]
        batch = np.stack([self.load_image(item) for item in items])
        return self.to_layout(self.normalize(batch))

    def value_range(self) -> tuple[float, float]:
        """Smallest and largest model value a pixel can map to (for random bench inputs)."""
        ends = np.array([0.0, 255.0], dtype=np.float32)[:, None] * self.scale
        values = (ends - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return float(values.min()), float(values.max())

    # --- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EdgeCNNError(f"preprocess spec has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        missing = {"height", "width"} - set(data)
        if missing:
            raise EdgeCNNError(f"preprocess spec lacks {sorted(missing)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EdgeCNNError):
                raise
            raise EdgeCNNError(f"preprocess spec has a value of the wrong type ({exc}): re-export or re-train") from None

    def save(self, path: str | os.PathLike) -> Path:
        from edge_cnn.io import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreprocessSpec":
        path = Path(path)
        if not path.is_file():
            raise EdgeCNNError(f"preprocess spec {path} does not exist: pass the run directory's preprocess.json")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgeCNNError(f"preprocess spec {path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise EdgeCNNError(f"preprocess spec {path} must hold a JSON object")
        return cls.from_dict(data)


def _tf_cast_float(tensor):
    import tensorflow as tf  # only reached with a tf tensor, i.e. TensorFlow is already loaded

    return tf.cast(tensor, tf.float32)


def to_pil(image: Any) -> Image.Image:
    """A path, PIL image or array -> PIL image; clear ``ImageError`` naming the input."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"image {path} does not exist")
        try:
            with Image.open(path) as pil:
                check_pixels(path, pil.width, pil.height)
                pil.load()
                return _to_8bit(path, pil.copy() if pil.mode not in ("P", "PA") else pil.convert("RGBA"))
        except Image.DecompressionBombError as exc:
            raise too_large_error(path, f"over Pillow's decompression-bomb limit ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"image {path} cannot be read ({exc}): replace or remove the file") from None
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ImageError(
                f"image array of shape {image.shape} cannot be converted: use (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
            )
        check_pixels("array", array.shape[1], array.shape[0])
        if array.dtype == np.uint16:  # 16-bit pixels: scaled to 8 bits, not clipped to white
            array = np.rint(array / 257.0).astype(np.uint8)
        elif array.dtype != np.uint8:
            if not np.all(np.isfinite(array)):
                raise ImageError("image array contains NaN or infinity")
            array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
        return Image.fromarray(array)
    raise ImageError(f"cannot read an image from a {type(image).__name__}: pass a path, a PIL image or an array")


def max_image_pixels() -> int:
    """The largest image (width x height) decoded: ``$EDGECNN_MAX_IMAGE_PIXELS`` or ``MAX_IMAGE_PIXELS``."""
    value = os.environ.get("EDGECNN_MAX_IMAGE_PIXELS")
    try:
        return int(value) if value else MAX_IMAGE_PIXELS
    except ValueError:
        raise EdgeCNNError(f"EDGECNN_MAX_IMAGE_PIXELS={value!r} is not a whole number of pixels") from None


def check_pixels(source: Any, width: int, height: int) -> None:
    """Refuse (``ImageError``) an image of more pixels than ``max_image_pixels()`` before decoding it."""
    if int(width) * int(height) > max_image_pixels():
        raise too_large_error(source, f"{int(width)}x{int(height)} pixels, over the limit of {max_image_pixels():,} pixels")


def too_large_error(source: Any, what: str) -> ImageError:
    return ImageError(
        f"image {source} is {what}, a decompression bomb or a huge scan: downscale it, "
        "or raise EDGECNN_MAX_IMAGE_PIXELS if you trust it"
    )


def _to_8bit(source: Any, pil: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images -> 8-bit grey by scaling their range, never by clipping.

    Integer pixels are scaled by the largest value their bit depth can hold (16 bits when the
    values fit, else 32); float pixels in 0..1 are taken as fractions of white, other float
    ranges are scaled so the brightest pixel is white.
    """
    if pil.mode in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "La", "RGBa", "RGBX"):
        return pil
    array = np.asarray(pil)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageError(f"image {source} holds NaN or infinite pixels: replace or remove the file")
        low, high = float(array.min()), float(array.max())
        full = 1.0 if low >= 0.0 and high <= 1.0 else max(high, 1e-12)
    else:
        high = int(array.max()) if array.size else 0
        full = 255 if pil.mode == "I" and high <= 255 else 65535 if high <= 65535 else 2**32 - 1
    scaled = np.clip(np.rint(array.astype(np.float64) * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled if scaled.ndim == 2 else scaled[..., :3])


def parse_size(text: str) -> tuple[int, int]:
    """'128x64' (height x width) or '96' -> (height, width)."""
    try:
        parts = [int(p) for p in str(text).lower().replace("×", "x").split("x")]
    except ValueError:
        raise EdgeCNNError(f"size {text!r} is not HxW (e.g. 128x64) or a single number") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise EdgeCNNError(f"size {text!r} is not HxW with positive numbers (e.g. 128x64)")
    return parts[0], parts[1]


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: str | os.PathLike, flag: str = "--data") -> list[Path]:
    """Every image file under ``folder``, recursively and sorted; a clear error naming ``flag``
    when the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeCNNError(f"{flag} {folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise EdgeCNNError(f"{flag} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files
