"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017).

The map of class c at layer A is ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean
of d logit_c / d A_k. Works for any convolutional model and any 4-D layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_cnn.explain.graph import (
    as_single,
    class_indices,
    resolve_layer,
    scale_maps,
    score_head,
    softmax,
    upsample,
)
from edge_cnn.keras import keras, tf


@dataclasses.dataclass
class Heatmaps:
    """Maps of a batch: ``maps`` (N, H, W) in [0, 1] at the input size, the explained classes,
    the model's probabilities, the layer the maps come from and its (h, w) resolution."""

    maps: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    layer: str
    resolution: tuple[int, int]


class GradCam:
    """Grad-CAM bound to one model and layer (the probe model is built once, for folders)."""

    def __init__(self, model: keras.Model, layer: str | None = None):
        target = resolve_layer(model, layer)
        self.layer = target.name
        self.head = score_head(model)
        self.probe = keras.Model(model.inputs, [target.output, self.head.tensor])

    def raw(self, batch: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Low-resolution weighted sums (before ReLU), classes explained, logits."""
        inputs = tf.convert_to_tensor(batch, tf.float32)
        with tf.GradientTape() as tape:
            features, head_input = self.probe(inputs, training=False)
            logits = self.head.logits(head_input)
            classes = class_indices(logits.numpy(), class_index)
            # images are independent in inference mode: one gradient serves the whole batch
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        raw = tf.reduce_sum(weights * features, axis=-1)
        return raw.numpy(), classes, logits.numpy()

    def __call__(self, batch: np.ndarray, class_index: int | None = None) -> Heatmaps:
        raw, classes, logits = self.raw(batch, class_index)
        maps = scale_maps(upsample(raw, batch.shape[1:3]))
        return Heatmaps(maps, classes, softmax(logits), self.layer, raw.shape[1:3])


def gradcam(model: keras.Model, image, layer: str | None = None, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM of one preprocessed image (H, W, C) or batch of 1: an (H, W) map in [0, 1].

    ``layer``: any 4-D layer by name (default: the last feature map before the head);
    ``class_index``: the class to explain (default: the predicted one).
    """
    batch = as_single(model, image)
    return GradCam(model, layer)(batch, class_index).maps[0]
