"""Graph surgery before conversion: the logits output of post-training int8, the embedding output.

Both build a new tf_keras Model over the same weights, so every format and precision carries
the change and the runtime needs no special case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.source import ExportSource
from edge_cnn.tasks import get_task

EMBEDDING_OUTPUT = "embedding"
CENTRE_BATCH = 256  # images per forward pass when averaging the training features


def embedding_layer(model, path: Path, task: str | None = None):
    """The task's feature layer (classify: ``head_pool``, the pooled penultimate features).
    A QAT model wraps it as ``quant_<name>``."""
    feature_layer = get_task(task).feature_layer
    if feature_layer is None:
        raise EdgeCNNError(f"--embedding exports an image-level feature vector and a {get_task(task).name} model has "
                           "none: export without --embedding")
    for name in (feature_layer, f"quant_{feature_layer}"):
        if name in {layer.name for layer in model.layers}:
            return model.get_layer(name)
    raise EdgeCNNError(
        f"{Path(path).name} has no {feature_layer!r} layer, so --embedding does not know which features to "
        f"export: train it with `edgecnn train` (whose head pools into {feature_layer!r}) "
        "or export without --embedding"
    )

def centre_images(src: ExportSource):
    """The images whose mean feature centres the embedding: the training split, else --calib-data."""
    return (src.train, "training split") if src.train else (src.calibration, "--calib-data images")

def embedding_centre(model, src: ExportSource) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean ``head_pool`` feature of ``model`` over the centring images, and the manifest's record of it.

    Post-ReLU pooled features are all non-negative, so raw vectors of different people point into one
    orthant (cosines of 0.9 between strangers); minus their mean, cosine similarity separates people."""
    from edge_cnn.keras import keras

    items, origin = centre_images(src)
    features = keras.Model(model.input, embedding_layer(model, src.model_path, src.task).output)
    total = 0.0
    for start in range(0, len(items), CENTRE_BATCH):
        x, _ = src.load(items[start : start + CENTRE_BATCH])
        total = total + features.predict(x, verbose=0).astype(np.float64).reshape(len(x), -1).sum(axis=0)
    centre = (total / len(items)).astype(np.float32)
    record = {"centred": True, "centre": f"mean {get_task(src.task).feature_layer} feature", "centre_images": origin,
              "centre_count": len(items), "centre_norm": float(np.linalg.norm(centre))}
    return centre, record

def with_embedding(model, src: ExportSource, centre: np.ndarray):
    """The same weights with two outputs: (probabilities, head_pool features - centre).

    The subtraction is a layer of the graph, so every format and precision (int8 included, whose output
    quantization then has a zero point inside a signed range) carries it and the runtime stays as it is."""
    from edge_cnn.keras import keras, layers, tf

    class EmbeddingCentre(layers.Layer):
        def build(self, input_shape):
            self.centre = self.add_weight("centre", shape=centre.shape, initializer="zeros", trainable=False)
            self.centre.assign(centre)

        @tf.autograph.experimental.do_not_convert  # nothing to convert; autograph re-reads the source file
        def call(self, inputs, training=None):  # the wrapper takes **kwargs, so Keras passes ``training``
            return inputs - self.centre

    embedding = EmbeddingCentre(name=EMBEDDING_OUTPUT)(embedding_layer(model, src.model_path, src.task).output)
    return keras.Model(model.input, [model.output, embedding], name=model.name)

def without_softmax(model):
    """The same weights with the class output (the first) taken before its softmax: the logits.

    Full-integer int8 quantizes a softmax output in steps of 1/256, so every confident answer comes out as
    0.996 or 0: on 457 pedestrian windows 303 tied at the top and 86 at 0, which erases the ranking that ROC
    AUC and non-maximum suppression rely on. Logits quantized over their own range keep it, and the runtime
    applies the softmax in float (the manifest says "logits"); the arg-max, hence accuracy, is unchanged."""
    from edge_cnn.keras import keras, layers

    last = model.get_layer(model.output_names[0])
    if type(last).__name__ == "Softmax":
        logits = last.input
    else:
        linear = layers.Dense.from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
    return keras.Model(model.inputs, [logits, *model.outputs[1:]], name=model.name)
