"""Model plumbing shared by the explainers: the run's Keras model, its feature-map layers,
its class scores (pre-softmax logits) and the image batch.

Explanations need gradients, so they work on the run directory's ``model.keras`` only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from edge_cnn.errors import EdgeCNNError, ModelFileError
from edge_cnn.keras import keras, tf
from edge_cnn.keras_file import load_keras_model
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.run_dir import RunDir
from edge_cnn.tasks import DEFAULT_TASK

NO_GRADIENT_SUFFIXES = (".tflite", ".onnx")
NEED_KERAS = "explanations need gradients: pass the run directory with model.keras"


@dataclasses.dataclass
class ExplainRun:
    """What every explainer reads from a run directory."""

    model: keras.Model
    labels: list[str]
    spec: PreprocessSpec
    path: Path


def open_run(path: str | os.PathLike) -> ExplainRun:
    """A run directory (or its ``model.keras``) -> model, labels, preprocessing; TFLite/ONNX refused."""
    path = Path(path)
    if path.suffix.lower() in NO_GRADIENT_SUFFIXES:
        raise ModelFileError(f"{path} is not a Keras model but a {path.suffix} file: {NEED_KERAS}")
    if path.is_file() and path.suffix == ".keras":
        path = path.parent
    if path.is_dir() and (path / "manifest.json").is_file() and not (path / "model.keras").is_file():
        raise ModelFileError(f"{path} is an export folder (TFLite/ONNX): {NEED_KERAS}")
    run = RunDir(path).require("model", "labels", "preprocess")
    if run.task() != DEFAULT_TASK:
        raise EdgeCNNError(f"{run.path} is a {run.task()!r} run: explain draws class activation maps of a "
                           f"classifier (--task {DEFAULT_TASK}); pass a classification run")
    model = load_model(run.model_path)
    labels = run.labels()
    classes = int(model.outputs[0].shape[-1])
    if classes != len(labels):
        raise EdgeCNNError(f"{run.model_path} predicts {classes} classes but {run.labels_path} names {len(labels)}")
    return ExplainRun(model, labels, run.preprocess(), run.path)


def load_model(path: Path) -> keras.Model:
    model = load_keras_model(path)
    check_classifier(model)
    return model


def check_classifier(model: keras.Model) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeCNNError(f"model {model.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs: "
                           "explanations support single-input, single-output image classifiers")


# --- layers ---------------------------------------------------------------------------

def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, RuntimeError, TypeError, ValueError):  # shared layers, several outputs
        return None


def feature_layers(model: keras.Model) -> list[str]:
    """Names of the layers whose output is a 4-D feature map (batch, height, width, channels)."""
    return [layer.name for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and _output_rank(layer) == 4]


def default_layer(model: keras.Model) -> str:
    """The last 4-D feature map before the head: walk back from the output through the
    head's single-input layers (Dense, Dropout, global pooling) to the first 4-D tensor."""
    tensor = model.outputs[0]
    while True:
        layer = tensor._keras_history.layer
        if isinstance(layer, keras.layers.InputLayer):
            break
        if len(tensor.shape) == 4:
            return layer.name
        if isinstance(layer.input, (list, tuple)):
            break
        tensor = layer.input
    raise EdgeCNNError(f"model {model.name} has no 4-D feature map before its head: "
                       "Grad-CAM needs a convolutional model (pass --layer NAME)")


def resolve_layer(model: keras.Model, name: str | None) -> keras.layers.Layer:
    """The named 4-D layer (default: :func:`default_layer`); a bad name lists the valid ones."""
    if name is None:
        return model.get_layer(default_layer(model))
    valid = feature_layers(model)
    if name not in valid:
        raise EdgeCNNError(f"layer {name!r} is not a 4-D feature-map layer of model {model.name}; "
                           f"valid layers: {', '.join(valid) or '(none)'}")
    return model.get_layer(name)


# --- class scores ---------------------------------------------------------------------

def _is_softmax(layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"


@dataclasses.dataclass
class ScoreHead:
    """Where the class scores come from.

    Grad-CAM explains the pre-softmax logit of the class (Selvaraju et al. 2017): the
    softmax probability saturates near 1 (vanishing gradients) and mixes in the other
    classes. Rather than cloning the model without its softmax (fragile with custom
    layers), the explainer reads the input of the softmax and, where the softmax is fused
    into the last Dense, re-applies that Dense's kernel and bias linearly: the same
    weights, the logits exactly.
    """

    tensor: tf.Tensor  # symbolic: the softmax's input, or the model output if there is none
    dense: keras.layers.Dense | None  # a Dense whose fused softmax is stripped

    def logits(self, value: tf.Tensor) -> tf.Tensor:
        if self.dense is None:
            return value
        logits = tf.tensordot(value, self.dense.kernel, axes=1)
        return logits + self.dense.bias if self.dense.use_bias else logits


def score_head(model: keras.Model) -> ScoreHead:
    output = model.outputs[0]
    last = output._keras_history.layer
    if _is_softmax(last) and isinstance(last, keras.layers.Dense):
        return ScoreHead(last.input, last)
    if _is_softmax(last):
        return ScoreHead(last.input, None)
    return ScoreHead(output, None)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def class_indices(logits: np.ndarray, class_index: int | None) -> np.ndarray:
    """Per image: ``class_index`` if given (validated), else the predicted class."""
    classes = logits.shape[-1]
    if class_index is None:
        return logits.argmax(axis=-1)
    if not 0 <= int(class_index) < classes:
        raise EdgeCNNError(f"class index {class_index} is out of range: the model has {classes} classes")
    return np.full(len(logits), int(class_index))


# --- images ---------------------------------------------------------------------------

def as_batch(model: keras.Model, image) -> np.ndarray:
    """A preprocessed (H, W, C) image or (N, H, W, C) batch -> float32 batch matching the model."""
    batch = np.asarray(image, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    expected = tuple(model.inputs[0].shape[1:])
    if batch.ndim != 4 or any(e is not None and e != d for e, d in zip(expected, batch.shape[1:])):
        raise EdgeCNNError(f"image of shape {np.shape(image)} does not fit model input {expected}: "
                           "pass spec.normalize(spec.load_image(path)) with the run's PreprocessSpec")
    return batch


def as_single(model: keras.Model, image) -> np.ndarray:
    """One preprocessed image (H, W, C) or a batch of one -> batch of one."""
    batch = as_batch(model, image)
    if len(batch) != 1:
        raise EdgeCNNError(f"expected one image, got a batch of {len(batch)}: explain images one at a time")
    return batch


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) low-resolution maps -> (N, H, W), bilinear."""
    resized = tf.image.resize(tf.convert_to_tensor(maps, tf.float32)[..., None], size, method="bilinear")
    return resized.numpy()[..., 0]


def scale_maps(maps: np.ndarray) -> np.ndarray:
    """ReLU then divide by the maximum (Selvaraju et al.): heat in [0, 1], only evidence *for* the class."""
    maps = np.maximum(maps, 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)
    return (maps / scale[:, None, None]).astype(np.float32)
