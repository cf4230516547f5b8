"""The one module that imports Keras.

tensorflow-model-optimization and tf2onnx need Keras 2, which ships as ``tf_keras``.
``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported so that
``tf.keras`` is ``tf_keras`` everywhere in the process (tfmot reads ``tf.keras``).
Every other module does ``from edge_cnn.keras import keras, tf``.
"""

import os

from edge_cnn.quiet import native_stderr_silenced, verbose

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's C++ start-up lines (CUDA driver probing, oneDNN notice) are written before absl reads
# TF_CPP_MIN_LOG_LEVEL, so only silencing file descriptor 2 keeps them off a user's terminal.
with native_stderr_silenced():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

if tf.keras.Model is not keras.Model:  # tf.keras was resolved (to Keras 3) before this module ran
    raise ImportError(
        "tf.keras was used before edge_cnn.keras set TF_USE_LEGACY_KERAS=1, so it is Keras 3. "
        "Import edge_cnn.keras (or set TF_USE_LEGACY_KERAS=1) before touching tf.keras."
    )

# TensorFlow's Python-side warnings ("... triggered tf.function retracing" when a study converts and times
# model after model, deprecation notices) say nothing a user can act on: shown with --verbose only.
if not verbose():
    tf.get_logger().setLevel("ERROR")

layers = keras.layers

__all__ = ["keras", "layers", "tf"]
