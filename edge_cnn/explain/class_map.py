"""Class activation maps (Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016).

For a global-average-pooling + dense head, the class score is sum_k w_kc * mean(F_k) + b_c,
so M_c(x, y) = sum_k w_kc F_k(x, y) says where the evidence for class c lies. No gradient
is needed; the map is upsampled to the input size, then ReLU'd and scaled by its maximum
like Grad-CAM (at the pooled layer, Grad-CAM equals CAM up to that scale).
"""

from __future__ import annotations

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.explain.grad_cam import Heatmaps
from edge_cnn.explain.graph import as_single, class_indices, scale_maps, score_head, softmax, upsample
from edge_cnn.keras import keras, tf

# layers allowed between the pooled features and the dense layer (identity at inference)
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout)


def cam_head(model: keras.Model) -> tuple[keras.layers.GlobalAveragePooling2D, keras.layers.Dense]:
    """The model's GlobalAveragePooling2D -> (Dropout) -> Dense head, or a clear error."""
    layer = model.outputs[0]._keras_history.layer
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        layer = layer.input._keras_history.layer
    dense = layer
    if isinstance(dense, keras.layers.Dense):
        layer = dense.input._keras_history.layer
        while isinstance(layer, _PASS_THROUGH):
            layer = layer.input._keras_history.layer
        if isinstance(layer, keras.layers.GlobalAveragePooling2D) and not layer.keepdims:
            return layer, dense
    raise EdgeCNNError(f"CAM needs a GlobalAveragePooling2D + Dense head (Zhou et al. 2016); model {model.name} "
                       f"ends with {type(dense).__name__} {dense.name!r}: use --method gradcam")


class Cam:
    """CAM bound to one model (the probe model is built once, for folders)."""

    def __init__(self, model: keras.Model):
        self.pool, self.dense = cam_head(model)
        self.head = score_head(model)
        self.probe = keras.Model(model.inputs, [self.pool.input, self.head.tensor])

    @property
    def layer(self) -> str:
        return self.pool.input._keras_history.layer.name

    def raw(self, batch: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Low-resolution maps sum_k w_kc F_k (before ReLU), classes explained, logits."""
        features, head_input = self.probe(tf.convert_to_tensor(batch, tf.float32), training=False)
        logits = self.head.logits(head_input).numpy()
        classes = class_indices(logits, class_index)
        class_weights = self.dense.kernel.numpy().T[classes]  # (N, K)
        raw = np.einsum("nhwk,nk->nhw", features.numpy(), class_weights)
        return raw, classes, logits

    def __call__(self, batch: np.ndarray, class_index: int | None = None) -> Heatmaps:
        raw, classes, logits = self.raw(batch, class_index)
        maps = scale_maps(upsample(raw, batch.shape[1:3]))
        return Heatmaps(maps, classes, softmax(logits), self.layer, raw.shape[1:3])


def cam(model: keras.Model, image, class_index: int | None = None) -> np.ndarray:
    """CAM of one preprocessed image (H, W, C) or batch of 1: an (H, W) map in [0, 1]."""
    batch = as_single(model, image)
    return Cam(model)(batch, class_index).maps[0]
