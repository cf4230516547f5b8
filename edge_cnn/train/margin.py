"""Margin-softmax heads that train a face-embedding model: ArcFace, CosFace and normalised softmax.

A plain softmax classifier learns features that separate the training people but not necessarily
by angle; verification compares unseen people by cosine similarity, so these heads classify by the
angle between the L2-normalised embedding x and L2-normalised class centres W_j, and demand a margin
for the true class y:

- ``softmax``  (NormFace): logit_j = s * cos(theta_j)
- ``cosface``  (Wang et al., CVPR 2018): logit_y = s * (cos(theta_y) - m)
- ``arcface``  (Deng et al., CVPR 2019): logit_y = s * cos(theta_y + m). As in the paper's
  implementation (insightface), where theta_y + m would pass pi, cos(theta_y + m) is no longer
  decreasing in theta, so the margin would reward a worse angle: there the logit is
  ``cos(theta_y) - m * sin(m)`` instead (the linear continuation; cos(theta_y) < cos(pi - m) selects it),
  or with ``easy_margin`` the plain ``cos(theta_y)`` whenever ``cos(theta_y) <= 0``.

Other classes keep s * cos(theta_j). The loss is sparse categorical cross-entropy on these logits.

The heads exist only during training. ``MarginHead`` is a custom layer, which the safe Keras loader
(``edge_cnn.keras_file``) refuses by design, so it must never reach a saved file:
``margin_training_model`` wraps the embedding model (image -> embedding, built from allowed layers)
in a second model (image, label -> logits) holding the head. Train the wrapper, then save only the
embedding model (``training_model.get_layer(embedding_model.name)`` is that same object, with the
trained weights); the class centres are discarded, as the people of the training set are not the
people verified later.
"""

from __future__ import annotations

import math
import numbers

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers, tf

MARGIN_KINDS = ("arcface", "cosface", "softmax")
# Clamp for sin(theta) = sqrt(1 - cos^2): keeps the gradient finite where cos(theta) = +-1.
COS_LIMIT = 1.0 - 1e-7


def check_margin(kind: str, scale: float, margin: float) -> None:
    """Refuse a kind, scale or margin that would not train (one line naming the fix)."""
    if kind not in MARGIN_KINDS:
        raise EdgeCNNError(f"margin head {kind!r} is unknown: use one of {', '.join(MARGIN_KINDS)}")
    if not all(isinstance(value, numbers.Real) for value in (scale, margin)):
        raise EdgeCNNError(f"margin scale {scale!r} and margin {margin!r} must be numbers")
    if not math.isfinite(scale) or scale <= 0:
        raise EdgeCNNError(f"margin scale {scale} must be a positive number (ArcFace and CosFace use 64, "
                           "smaller for few classes)")
    if kind == "softmax":
        if margin != 0:
            raise EdgeCNNError(f"softmax margin {margin}: the plain normalised softmax has no margin; pass 0 "
                               "or choose arcface / cosface")
        return
    high, hint = (math.pi / 2, "radians; ArcFace uses 0.5") if kind == "arcface" else (1.0, "CosFace uses 0.35")
    if not math.isfinite(margin) or not 0.0 <= margin < high:
        raise EdgeCNNError(f"{kind} margin {margin} is out of range [0, {high:.4g}) ({hint})")


def margin_logits(embeddings, weights, labels, kind: str, scale: float, margin: float, easy_margin: bool = False):
    """Scaled margin logits (N, C) for embeddings (N, D), class centres ``weights`` (D, C) and
    integer ``labels`` (N,). Both sides are L2-normalised here; the margin applies to the label's column."""
    check_margin(kind, scale, margin)
    features = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1)
    centres = tf.math.l2_normalize(tf.cast(weights, tf.float32), axis=0)
    cosine = tf.matmul(features, centres)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    num_classes = tf.shape(centres)[1]
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(labels, message="a margin-head label is negative"),
        tf.debugging.assert_less(labels, num_classes, message="a margin-head label is >= the number of classes"),
    ]):
        target = tf.one_hot(labels, num_classes, dtype=cosine.dtype)
    if kind == "softmax":
        return scale * cosine
    if kind == "cosface":
        return scale * (cosine - margin * target)
    clipped = tf.clip_by_value(cosine, -COS_LIMIT, COS_LIMIT)
    sine = tf.sqrt(1.0 - clipped * clipped)
    widened = cosine * math.cos(margin) - sine * math.sin(margin)  # cos(theta + m)
    if easy_margin:
        widened = tf.where(cosine > 0.0, widened, cosine)
    else:
        widened = tf.where(cosine > math.cos(math.pi - margin), widened, cosine - margin * math.sin(margin))
    return scale * (target * widened + (1.0 - target) * cosine)


class MarginHead(layers.Layer):
    """Training-only layer: [embeddings (N, D), labels (N,)] -> margin logits (N, classes).

    Holds the class centres (D, classes). Never save a model containing it (module docstring).
    """

    def __init__(self, num_classes: int, kind: str = "arcface", scale: float = 64.0, margin: float = 0.5,
                 easy_margin: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # under mixed precision too: angles near 0 need float32's resolution
        super().__init__(**kwargs)
        check_margin(kind, scale, margin)
        if int(num_classes) < 2:
            raise EdgeCNNError(f"a margin head needs at least 2 training people, not {num_classes}")
        self.num_classes = int(num_classes)
        self.kind = kind
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def build(self, input_shape):
        dimensions = int(input_shape[0][-1])
        self.centres = self.add_weight(
            name="centres", shape=(dimensions, self.num_classes),
            initializer=keras.initializers.GlorotUniform(), trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        embeddings, labels = inputs
        return margin_logits(embeddings, self.centres, labels, self.kind, self.scale, self.margin, self.easy_margin)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "kind": self.kind, "scale": self.scale,
                "margin": self.margin, "easy_margin": self.easy_margin}


def margin_training_model(embedding_model, num_classes: int, kind: str = "arcface", scale: float = 64.0,
                          margin: float = 0.5, easy_margin: bool = False):
    """(image, label) -> margin logits around ``embedding_model`` (image -> (N, D) embedding).

    The embedding model is a nested layer of the result and shares its weights: after ``fit``, save
    ``embedding_model`` itself. Compile with ``margin_loss()``.
    """
    if len(embedding_model.outputs) != 1 or len(embedding_model.outputs[0].shape) != 2:
        raise EdgeCNNError(f"model {embedding_model.name} must have one (batch, dimensions) output to train with "
                           "a margin head: end it with global pooling or a Dense embedding layer")
    image = keras.Input(embedding_model.inputs[0].shape[1:], name="image")
    label = keras.Input((), dtype="int32", name="label")
    head = MarginHead(num_classes, kind, scale, margin, easy_margin, name="margin_head")
    logits = head([embedding_model(image), label])
    return keras.Model([image, label], logits, name=f"{embedding_model.name}_{kind}_training")


def margin_loss():
    """Cross-entropy on margin logits (the head outputs logits, not probabilities)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
