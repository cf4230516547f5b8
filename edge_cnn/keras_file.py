"""The one safe way to load a Keras model file: its config is checked before tf_keras sees it.

tf_keras deserialises a ``.keras`` archive's ``config.json`` by importing whatever ``module``
it names and calling it. ``safe_mode=True`` only refuses pickled lambda bytecode: a crafted
Lambda layer whose function is ``{"module": "builtins", "config": "exec"}``, fed a
``_CONSTANT_VALUE`` string, still runs arbitrary code while the model is being built. So
every verb that reads a Keras file (train ``--weights``, evaluate, export, explain, the bench
Keras baseline, pipeline) calls ``load_keras_model``, which first reads the configuration
without TensorFlow and refuses:

- any layer whose class is not in ``ALLOWED_LAYERS`` (the layer types the zoo and the
  trainer's heads build);
- any ``module`` outside ``keras`` / ``tf_keras``;
- any Lambda-like layer or function object, and any ``_CONSTANT_VALUE`` node.

Only then is the file handed to tf_keras, with ``safe_mode=True``. Legacy ``.h5`` full-model
files are checked the same way through their ``model_config`` attribute.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator

from edge_cnn.errors import ModelFileError

# Built-in tf_keras layers whose configuration is plain data: the zoo's building blocks,
# the trainer's heads, nested models, and the pass-through layers explain knows about.
ALLOWED_LAYERS = frozenset(
    {
        "InputLayer",
        "Functional",
        "Sequential",
        "Model",
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "BatchNormalization",
        "LayerNormalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "Softmax",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Concatenate",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "ZeroPadding2D",
        "Cropping2D",
        "UpSampling2D",
        "Conv2DTranspose",
        "Flatten",
        "Reshape",
        "Permute",
        "Dense",
        "Dropout",
        "SpatialDropout2D",
        "GaussianNoise",
        "GaussianDropout",
        "Rescaling",
        "Normalization",
        "UnitNormalization",
    }
)
ALLOWED_MODULE_ROOTS = ("keras", "tf_keras")
# Class names that carry code or call an arbitrary function, wherever they appear. (A plain
# ``"class_name": "function"`` names a keras activation or loss; its module is checked instead.)
CODE_CARRIERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})
CONSTANT_NODE = "_CONSTANT_VALUE"
MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a config larger than this is not a model the zoo builds


def check_keras_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and vet a ``.keras`` archive's (or ``.h5`` file's) model configuration.

    Returns the parsed configuration; raises ``ModelFileError`` naming the offending layer
    and the reason. Never imports TensorFlow and never executes anything from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist: pass a run directory or a .keras file")
    config = _read_config(path)
    for reason in _violations(config):
        raise ModelFileError(
            f"{path} is refused: {reason}. edgecnn loads only models built from tf_keras' own layers "
            "(README: Security and failure behaviour); rebuild it with the zoo or re-save it without that layer"
        )
    return config


def load_keras_model(path: str | os.PathLike, *, compile: bool = False):
    """``check_keras_file``, then tf_keras ``load_model`` in safe mode; one-line errors."""
    path = Path(path)
    check_keras_file(path)
    from edge_cnn.keras import keras

    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # noqa: BLE001  zip/h5/deserialisation errors come in many types
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path} cannot be loaded as a tf_keras model ({reason}): it is truncated, corrupt or not a Keras 2 "
            "(tf_keras) model file; re-save it with `edgecnn train` or tf_keras"
        ) from None


def _read_config(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    raise ModelFileError(f"{path}: its config.json is {info.file_size} bytes, too large for a model")
                text = archive.read(info)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelFileError(
                f"{path} cannot be loaded: it is not a complete .keras archive ({exc}); it is truncated or corrupt, re-save it"
            ) from None
    elif path.suffix.lower() in (".h5", ".hdf5"):
        text = _h5_model_config(path)
    elif path.suffix.lower() == ".keras":
        raise ModelFileError(f"{path} cannot be loaded: it is not a complete .keras archive (zip); it is truncated or corrupt, re-save it")
    else:
        raise ModelFileError(f"{path} cannot be loaded: it is not a .keras archive (a zip file); re-save the model with tf_keras")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path} cannot be loaded: its model configuration is not valid JSON ({exc}); re-save it") from None


def _h5_model_config(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            text = handle.attrs.get("model_config")
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be loaded as HDF5 ({exc}): it is truncated or corrupt, re-save it") from None
    if text is None:
        raise ModelFileError(f"{path} holds weights only, no model: build the model and load it as weights")
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def _violations(config: Any) -> Iterator[str]:
    """Every reason to refuse ``config``, walking all of it (layers nest inside models)."""
    for node, where in _walk(config, "model"):
        if isinstance(node, str):
            if node == CONSTANT_NODE:
                yield f"{where} takes a constant input ({CONSTANT_NODE}), which can carry code"
            continue
        module = node.get("module")
        if module is not None and (not isinstance(module, str) or module.split(".")[0] not in ALLOWED_MODULE_ROOTS):
            yield f"{where} names module {module!r}, outside keras/tf_keras"
        class_name = node.get("class_name")
        if class_name in CODE_CARRIERS:
            yield f"layer {_name(node)!r} is a {class_name} layer, which runs code"
        layers = node.get("config", {}).get("layers") if isinstance(node.get("config"), dict) else None
        for layer in layers if isinstance(layers, list) else ():
            layer_class = layer.get("class_name") if isinstance(layer, dict) else None
            if layer_class not in ALLOWED_LAYERS and layer_class not in CODE_CARRIERS:
                yield f"layer {_name(layer)!r} is of class {layer_class!r}, which is not on the allow-list"


def _walk(node: Any, where: str, depth: int = 0) -> Iterator[tuple[Any, str]]:
    if depth > 200:
        raise ModelFileError("the model configuration nests more than 200 levels deep; it is not a zoo model")
    if isinstance(node, str):
        yield node, where
    elif isinstance(node, dict):
        yield node, where
        here = f"layer {_name(node)!r}" if "class_name" in node and _name(node) else where
        for value in node.values():
            yield from _walk(value, here, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, where, depth + 1)


def _name(node: Any) -> str:
    if not isinstance(node, dict):
        return "?"
    config = node.get("config")
    name = node.get("name") or (config.get("name") if isinstance(config, dict) else None)
    return str(name) if name is not None else str(node.get("class_name", "?"))
