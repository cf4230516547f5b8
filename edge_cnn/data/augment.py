"""Training-time augmentation: the ImageDataGenerator options as tf ops inside ``tf.data``.

Applied to whole batches of 0..255 pixels (one op call per batch, a fresh random draw per
image), before ``PreprocessSpec.normalize``. Rotation, shift, zoom, flip and brightness are
Keras preprocessing layers; shear (no Keras layer) is one projective transform; contrast is
drawn per image (Keras' RandomContrast draws one factor per batch); cutout (DeVries & Taylor
2017, arXiv:1708.04552) zeroes a square. For grey and low-resolution cameras, three probabilities
per image: downscale (a random 2-4.5x shrink by area averaging, scaled back bilinearly: a 128x64
window down to 28x14 at most, below the 36x18 of a distant pedestrian), then grey and blur
(``face_augment.face_pixel_ops``, shared with the embed task). Mixup (Zhang et al. 2018,
arXiv:1710.09412) and CutMix (Yun et al. 2019, arXiv:1905.04899) mix normalised images and
their one-hot labels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from edge_cnn.errors import EdgeCNNError

DOWNSCALE_FACTORS = (2.0, 4.5)  # shrink range; 64/18 = 3.6 puts a 36x18 pedestrian inside it


@dataclasses.dataclass
class AugmentConfig:
    """Every option off by default; ``photo_defaults()`` for natural photographs."""

    rotation: float = 0.0  # degrees, +-
    width_shift: float = 0.0  # fraction of the width, +-
    height_shift: float = 0.0  # fraction of the height, +-
    shear: float = 0.0  # degrees, +-
    zoom: float = 0.0  # fraction, +- (aspect ratio kept)
    horizontal_flip: bool = False
    brightness: float = 0.0  # fraction of 0..255 added, +-
    contrast: float = 0.0  # contrast factor 1 +- this
    cutout: float = 0.0  # side of the erased square, fraction of the shorter image side
    mixup: float = 0.0  # Beta(alpha, alpha) alpha
    cutmix: float = 0.0  # Beta(alpha, alpha) alpha
    grey: float = 0.0  # probability of luma in every channel
    blur: float = 0.0  # probability of a Gaussian blur (face_augment.BLUR_SIGMAS)
    downscale: float = 0.0  # probability of a DOWNSCALE_FACTORS shrink and back

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise EdgeCNNError(f"augmentation {field.name} must be true or false, not {value!r}")
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise EdgeCNNError(f"augmentation {field.name} must be a number, not {value!r}") from None
            if not math.isfinite(value) or value < 0:
                raise EdgeCNNError(f"augmentation {field.name} must be a number >= 0, not {value!r}")
            setattr(self, field.name, value)
        for name in ("width_shift", "height_shift", "zoom", "brightness", "contrast", "cutout"):
            if getattr(self, name) >= 1:
                raise EdgeCNNError(f"augmentation {name} is a fraction: use a value in [0, 1)")
        for name in ("grey", "blur", "downscale"):
            if getattr(self, name) > 1:
                raise EdgeCNNError(f"augmentation {name} is a probability: use a value in [0, 1]")
        if self.rotation > 180 or self.shear >= 90:
            raise EdgeCNNError("augmentation rotation must be <= 180 degrees and shear < 90 degrees")

    @classmethod
    def photo_defaults(cls) -> "AugmentConfig":
        return cls(
            rotation=10, width_shift=0.1, height_shift=0.1, zoom=0.1,
            horizontal_flip=True, brightness=0.1, contrast=0.1,
        )

    @property
    def active(self) -> bool:
        """Whether any option changes training images."""
        return any(getattr(self, f.name) for f in dataclasses.fields(self))

    @property
    def changes_pixels(self) -> bool:
        """Whether a per-image option (anything but mixup/cutmix) is on."""
        return any(getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("mixup", "cutmix"))

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "AugmentConfig":
        data = dict(data or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise EdgeCNNError(f"unknown augmentation key(s) {unknown}: known keys are {known}")
        return cls(**data)


def pixel_augmenter(config: AugmentConfig, seed: int):
    """A function (batch of 0..255 float pixels NHWC) -> augmented batch, same shape, 0..255."""
    from edge_cnn.data.face_augment import face_pixel_ops
    from edge_cnn.keras import layers, tf

    keras_layers = []
    if config.rotation:
        keras_layers.append(layers.RandomRotation(config.rotation / 360.0, fill_mode="reflect", seed=seed))
    if config.width_shift or config.height_shift:
        keras_layers.append(layers.RandomTranslation(config.height_shift, config.width_shift, seed=seed + 1))
    if config.zoom:
        keras_layers.append(layers.RandomZoom((-config.zoom, config.zoom), seed=seed + 2))
    if config.horizontal_flip:
        keras_layers.append(layers.RandomFlip("horizontal", seed=seed + 3))
    if config.brightness:
        keras_layers.append(layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))
    generator = tf.random.Generator.from_seed(seed + 5)
    camera = face_pixel_ops(config.grey, config.blur, seed)  # own generator: the embed route's draws unchanged

    def augment(pixels):
        pixels = tf.cast(pixels, tf.float32)
        for layer in keras_layers:
            pixels = layer(pixels, training=True)
        if config.shear:
            pixels = _shear(pixels, config.shear, generator, tf)
        if config.contrast:
            pixels = _contrast(pixels, config.contrast, generator, tf)
        if config.cutout:
            pixels = _cutout(pixels, config.cutout, generator, tf)
        pixels = tf.clip_by_value(pixels, 0.0, 255.0)
        if config.downscale:
            pixels = _downscale(pixels, config.downscale, generator, tf)
        return pixels if camera is None else camera(pixels)

    return augment


def _shear(pixels, degrees: float, generator, tf):
    """x_in = x + tan(angle) * (y - centre_y): a horizontal shear about the image centre."""
    shape = tf.shape(pixels)
    batch, height = shape[0], tf.cast(shape[1], tf.float32)
    tangent = tf.tan(generator.uniform([batch], -degrees, degrees) * (math.pi / 180.0))
    ones, zeros = tf.ones([batch]), tf.zeros([batch])
    transforms = tf.stack(
        [ones, tangent, -tangent * (height - 1.0) / 2.0, zeros, ones, zeros, zeros, zeros], axis=1
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=pixels, transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT",
    )


def _contrast(pixels, fraction: float, generator, tf):
    """(x - mean) * factor + mean per image and channel, factor in 1 +- fraction."""
    factor = generator.uniform([tf.shape(pixels)[0], 1, 1, 1], 1.0 - fraction, 1.0 + fraction)
    mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
    return (pixels - mean) * factor + mean


def _downscale(pixels, probability: float, generator, tf):
    """Each image, with ``probability``: shrunk by a factor in DOWNSCALE_FACTORS (area averaging) and
    brought back to its size (bilinear), as a low-resolution camera or a distant subject gives it."""
    shape = tf.shape(pixels)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    factors = generator.uniform([shape[0]], *DOWNSCALE_FACTORS)
    chosen = generator.uniform([shape[0]]) < probability

    def one(args):
        image, factor = args
        small = tf.maximum(1, tf.cast(tf.round(tf.stack([height, width]) / factor), tf.int32))
        shrunk = tf.image.resize(image, small, method="area")
        return tf.image.resize(shrunk, shape[1:3], method="bilinear")

    degraded = tf.map_fn(one, (pixels, factors), fn_output_signature=tf.TensorSpec(pixels.shape[1:], tf.float32))
    return tf.where(chosen[:, None, None, None], degraded, pixels)


def _box_mask(shape, box_height, box_width, generator, tf):
    """1.0 inside one random box per image (centre uniform, box clipped at the borders)."""
    batch, height, width = shape[0], shape[1], shape[2]
    centre_y = generator.uniform([batch, 1, 1], 0.0, tf.cast(height, tf.float32))
    centre_x = generator.uniform([batch, 1, 1], 0.0, tf.cast(width, tf.float32))
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None] + 0.5
    cols = tf.cast(tf.range(width), tf.float32)[None, None, :] + 0.5
    inside_y = tf.abs(rows - centre_y) < tf.reshape(box_height, [-1, 1, 1]) / 2.0
    inside_x = tf.abs(cols - centre_x) < tf.reshape(box_width, [-1, 1, 1]) / 2.0
    return tf.cast(tf.logical_and(inside_y, inside_x), tf.float32)[..., None]


def _cutout(pixels, fraction: float, generator, tf):
    shape = tf.shape(pixels)
    side = fraction * tf.cast(tf.minimum(shape[1], shape[2]), tf.float32)
    sides = tf.fill([shape[0]], side)
    return pixels * (1.0 - _box_mask(shape, sides, sides, generator, tf))


def batch_mixer(config: AugmentConfig, seed: int):
    """A function (normalised images, one-hot labels) -> mixed images and soft labels.

    Each image is mixed with another image of the batch; with both mixup and cutmix on,
    each image gets one or the other with equal probability.
    """
    from edge_cnn.keras import tf

    generator = tf.random.Generator.from_seed(seed + 6)

    def beta(alpha, batch):
        seeds = generator.make_seeds(2)
        first = tf.random.stateless_gamma([batch], seeds[:, 0], alpha=alpha)
        second = tf.random.stateless_gamma([batch], seeds[:, 1], alpha=alpha)
        return first / (first + second)

    def mix(images, labels):
        shape = tf.shape(images)
        batch = shape[0]
        partner = tf.argsort(generator.uniform([batch]))
        other_images, other_labels = tf.gather(images, partner), tf.gather(labels, partner)
        results = []
        if config.mixup:
            keep = beta(config.mixup, batch)
            results.append((keep[:, None, None, None], keep))
        if config.cutmix:
            keep = beta(config.cutmix, batch)
            cut = tf.sqrt(1.0 - keep)
            mask = _box_mask(shape, cut * tf.cast(shape[1], tf.float32), cut * tf.cast(shape[2], tf.float32),
                             generator, tf)
            area = tf.reduce_mean(mask, axis=[1, 2, 3])
            results.append((1.0 - mask, 1.0 - area))  # label weight = the pasted area actually kept
        if len(results) == 2:
            use_cutmix = generator.uniform([batch]) < 0.5
            pixel_keep = tf.where(use_cutmix[:, None, None, None], results[1][0], results[0][0])
            label_keep = tf.where(use_cutmix, results[1][1], results[0][1])
        else:
            pixel_keep, label_keep = results[0]
        mixed = images * pixel_keep + other_images * (1.0 - pixel_keep)
        soft = labels * label_keep[:, None] + other_labels * (1.0 - label_keep[:, None])
        return mixed, soft

    return mix
