"""Input patterns that maximise a filter: gradient ascent on the input image.

Plain ascent produces high-frequency noise that also excites the filter. The regularisers
of Yosinski et al. ("Understanding Neural Networks Through Deep Visualization", 2015)
and Olah et al. ("Feature Visualization", Distill 2017) make it a pattern: a random
jitter (shift) each step, L2 decay towards mid-grey, a Gaussian blur every few steps,
gradients normalised to unit RMS, and pixels clipped to the preprocessing's value range.
All filters are optimised together as one batch (images are independent at inference).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.explain.graph import resolve_layer
from edge_cnn.explain.drawing import pyplot, figure_to_array
from edge_cnn.keras import keras, tf


@dataclasses.dataclass
class FilterPatterns:
    """``images`` (N, H, W, C) in model values; ``start_scores``/``final_scores``: each filter's
    mean activation on the starting noise and on its final pattern."""

    layer: str
    filters: list[int]
    images: np.ndarray
    start_scores: np.ndarray
    final_scores: np.ndarray


def choose_filters(channels: int, filters: int | list[int]) -> list[int]:
    """A count N (the first N channels) or explicit channel indices."""
    if isinstance(filters, int):
        if filters < 1:
            raise EdgeCNNError(f"number of filters must be at least 1; got {filters}")
        return list(range(min(filters, channels)))
    chosen = [int(f) for f in filters]
    bad = [f for f in chosen if not 0 <= f < channels]
    if bad or not chosen:
        raise EdgeCNNError(f"filters {bad or chosen} are out of range: the layer has {channels} channels (0..{channels - 1})")
    return chosen


def _gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    radius = max(1, int(round(2 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel_1d = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel_1d /= kernel_1d.sum()
    channels = int(images.shape[-1])
    kernel = np.outer(kernel_1d, kernel_1d)[:, :, None, None] * np.ones((1, 1, channels, 1), np.float32)
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")


def filter_patterns(
    model: keras.Model,
    layer: str,
    filters: int | list[int] = 16,
    steps: int = 80,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    step_size: float = 0.02,
    jitter: int = 2,
    decay: float = 0.01,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    seed: int = 0,
    on_step=None,
) -> FilterPatterns:
    """Synthesise one input per filter of ``layer`` that maximises its mean activation.

    ``value_range``: the model values a pixel can take (``spec.value_range()``);
    ``step_size`` is a fraction of that range per step.
    """
    target = resolve_layer(model, layer)
    channels = int(target.output.shape[-1])
    chosen = choose_filters(channels, filters)
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise EdgeCNNError(f"model {model.name} has a variable input size {shape}: filter patterns need a fixed one")
    probe = keras.Model(model.inputs, target.output)
    low, high = (float(v) for v in value_range)
    middle, span = (low + high) / 2, high - low
    rng = np.random.default_rng(seed)
    start = middle + rng.normal(0.0, 0.1 * span, (len(chosen), *shape)).astype(np.float32)
    images = tf.constant(np.clip(start, low, high))
    selector = tf.one_hot(chosen, channels)  # (N, channels): each image's own filter

    def scores(batch: tf.Tensor) -> tf.Tensor:
        activation = tf.reduce_mean(probe(batch, training=False), axis=(1, 2))  # (N, channels)
        return tf.reduce_sum(activation * selector, axis=1)

    start_scores = scores(images).numpy()
    for step in range(1, steps + 1):
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
        shifted = tf.roll(images, (dy, dx), axis=(1, 2))
        with tf.GradientTape() as tape:
            tape.watch(shifted)
            total = tf.reduce_sum(scores(shifted))
        grads = tf.roll(tape.gradient(total, shifted), (-dy, -dx), axis=(1, 2))
        grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-8
        images = images + step_size * span * grads
        images = middle + (images - middle) * (1.0 - decay)
        if blur_every and step % blur_every == 0:
            images = _gaussian_blur(images, blur_sigma)
        images = tf.clip_by_value(images, low, high)
        if on_step:
            on_step(step)
    return FilterPatterns(target.name, chosen, images.numpy(), start_scores, scores(images).numpy())


def to_display(image: np.ndarray) -> np.ndarray:
    """Contrast-stretch one pattern (its mean at mid-grey, +-2.5 std to black and white) to uint8."""
    centred = (image - image.mean()) / (image.std() + 1e-8)
    shown = np.clip(0.5 + 0.2 * centred, 0.0, 1.0)
    return np.rint(shown * 255).astype(np.uint8)


def pattern_grid(patterns: FilterPatterns, title: str = "") -> np.ndarray:
    """A figure (uint8 RGB) with one tile per filter, labelled with its index."""
    plt = pyplot()
    count = len(patterns.filters)
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows + 0.4), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, image, index in zip(axes.ravel(), patterns.images, patterns.filters):
        shown = to_display(image)
        axis.imshow(shown[:, :, 0] if shown.shape[2] == 1 else shown, cmap="gray" if shown.shape[2] == 1 else None)
        axis.set_title(f"#{index}", fontsize=8)
    figure.suptitle(title or f"{patterns.layer}: patterns that maximise each filter", fontsize=9)
    return figure_to_array(figure)
