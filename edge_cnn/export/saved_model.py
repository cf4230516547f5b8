"""Keras -> TensorFlow SavedModel folder (the format table's ``saved_model`` writer).

The float graph as TensorFlow serves it (TF Serving, TF.js and TFLite converters take it); for a
QAT model, its fake-quant graph.
"""

from __future__ import annotations

from pathlib import Path

from edge_cnn.keras import tf


def write_saved_model(context, job, path: Path) -> None:
    tf.saved_model.save(context.model, str(path))
