"""The trained model: a zoo backbone plus its task's head, and the two transfer-learning stages.

One flat functional model (no nested backbone) so that export, QAT (tfmot cannot
quantize nested models) and CAM see every layer. The task (``edge_cnn.tasks``) builds the
head and names its layers; every other layer belongs to the backbone.

Freezing relies on Keras 2 semantics: a BatchNormalization layer with
``trainable=False`` runs in inference mode (moving statistics used and not updated)
whatever the ``training`` argument, so a frozen backbone is also BN-frozen without
nesting it under ``training=False``.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers, tf
from edge_cnn.keras_file import load_keras_model
from edge_cnn.tasks import get_task

# zoo name -> (keras.applications constructor, weights file stem, PreprocessSpec normalisation)
# Only families whose Keras Applications normalisation fits PreprocessSpec (no BGR flip).
IMAGENET = {
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5",
                     {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "mobilenet_v1": ("MobileNet", "mobilenet_{alpha_text}_224_tf_no_top.h5",
                  {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "densenet121": ("DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}),
    # MobileNetV3's Keras model rescales to [-1, 1] inside (include_preprocessing); the zoo's does not, so
    # PreprocessSpec does it, and the Rescaling layer (no weights) is skipped when weights are copied.
    "mobilenet_v3_small": ("MobileNetV3Small", "weights_mobilenet_v3_small_224_{alpha}_float_no_top_v2.h5",
                           {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "mobilenet_v3_large": ("MobileNetV3Large", "weights_mobilenet_v3_large_224_{alpha}_float_no_top_v2.h5",
                           {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "inception_v3": ("InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "xception": ("Xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "inception_resnet_v2": ("InceptionResNetV2", "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
    "nasnet_mobile": ("NASNetMobile", "nasnet_mobile_no_top.h5", {"scale": 1 / 127.5, "mean": (1.0,), "std": (1.0,)}),
}


def build_model(name: str, input_shape, num_outputs: int, *, task: str | None = None, width=None,
                dropout: float = 0.2, pooling: str = "avg"):
    """Zoo backbone ``name`` (``include_top=False``) -> the task's head (classify: pooling -> Dropout ->
    Dense softmax; ``pooling`` is avg, max or flatten)."""
    from edge_cnn import zoo

    options = {}
    if width is not None:
        option = zoo.model_info(name).width_option
        if option is None:
            raise EdgeCNNError(f"model {name} has no width multiplier: drop --width")
        options[option] = float(width)
    head = get_task(task)
    backbone = zoo.build(name, input_shape=tuple(input_shape), num_classes=num_outputs, include_top=False, **options)
    features = backbone.output
    if len(features.shape) != 4:
        raise EdgeCNNError(f"{name} without its top gives shape {features.shape}; the head needs a 4-D feature map")
    outputs = head.build_head(features, int(num_outputs), dropout=dropout, pooling=pooling)
    return keras.Model(backbone.input, outputs, name=f"{name}_{head.model_suffix}")


def backbone_layers(model, task: str | None = None) -> list:
    head_layers = get_task(task).head_layers
    return [layer for layer in model.layers if layer.name not in head_layers]


def _weighted(layer) -> bool:
    return bool(layer.weights) and not isinstance(layer, layers.BatchNormalization)


def set_stage(model, stage: int, *, pretrained: bool, unfreeze: int | None, task: str | None = None) -> None:
    """Stage 1: head only when pretrained, everything from scratch.
    Stage 2: the top ``unfreeze`` weighted backbone layers (all when None), BN always frozen."""
    backbone = backbone_layers(model, task)
    for layer in model.layers:
        layer.trainable = True
    if stage == 1:
        if pretrained:
            for layer in backbone:
                layer.trainable = False
        return
    weighted = [layer for layer in backbone if _weighted(layer)]
    first_thawed = 0 if unfreeze is None else max(0, len(weighted) - unfreeze)
    thawed = {id(layer) for layer in weighted[first_thawed:]}
    for layer in backbone:
        if isinstance(layer, layers.BatchNormalization) or (_weighted(layer) and id(layer) not in thawed):
            layer.trainable = False


def add_l2(model, l2: float) -> None:
    """L2 on every convolution/dense kernel, as a model loss (the zoo builds without regularizers)."""
    if not l2:
        return
    for layer in model.layers:
        for attribute in ("kernel", "depthwise_kernel"):
            kernel = getattr(layer, attribute, None)
            if kernel is not None:
                model.add_loss(lambda kernel=kernel: float(l2) * tf.reduce_sum(tf.square(kernel)))


# --- initial weights ----------------------------------------------------------

def copy_weights(source, target, *, layer_names=None) -> int:
    """Copy weights layer by layer, matched by name, where every shape matches.

    Returns the number of layers copied (``layer_names`` limits the target layers).
    """
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    copied = 0
    for layer in target.layers:
        if not layer.weights or (layer_names is not None and layer.name not in layer_names):
            continue
        other = source_layers.get(layer.name)
        if other is None:
            continue
        values = other.get_weights()
        if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
            continue
        layer.set_weights(values)
        copied += 1
    return copied


def _copy_in_order(source, target_layers) -> int:
    """Fallback for Keras Applications files whose layer names differ from the zoo's:
    copy in order when both lists of weight shapes are identical."""
    source_layers = [layer for layer in source.layers if layer.weights]
    target_layers = [layer for layer in target_layers if layer.weights]
    shapes = lambda ls: [[tuple(w.shape) for w in layer.weights] for layer in ls]  # noqa: E731
    if shapes(source_layers) != shapes(target_layers):
        return 0
    for src, dst in zip(source_layers, target_layers):
        dst.set_weights(src.get_weights())
    return len(target_layers)


def load_initial_weights(model, weights: str, *, model_name: str, width=None, task: str | None = None
                         ) -> tuple[int, int, str]:
    """``--weights none|imagenet|PATH`` into the backbone.

    Returns (layers copied, backbone layers with weights, where from). Raises when
    nothing matched, so a wrong file never silently trains from scratch.
    """
    backbone = backbone_layers(model, task)
    names = {layer.name for layer in backbone}
    total = sum(1 for layer in backbone if layer.weights)
    if weights == "imagenet":
        source, origin = _imagenet_backbone(model, model_name, width)
        copied = copy_weights(source, model, layer_names=names) or _copy_in_order(source, backbone)
    else:
        origin = str(_weights_file(weights))
        source = load_keras_model(origin)
        copied = copy_weights(source, model, layer_names=names)
    if copied == 0:
        raise EdgeCNNError(
            f"--weights {weights}: no backbone layer of {model_name} matches {origin} by name and shape "
            "(same --model and --width as the source run?)"
        )
    return copied, total, origin


def _weights_file(weights: str) -> Path:
    path = Path(weights)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise EdgeCNNError(
            f"--weights {weights}: no such run directory or .keras file (use none, imagenet, a run dir or a .keras file)"
        )
    return path


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_preprocess(model_name: str) -> dict | None:
    """The normalisation the Keras Applications weights were trained with (None: not available)."""
    entry = IMAGENET.get(model_name)
    return dict(entry[2]) if entry else None


def _imagenet_backbone(model, model_name: str, width):
    if model_name not in IMAGENET:
        raise EdgeCNNError(
            f"--weights imagenet: Keras Applications has no weights for {model_name} usable here "
            f"(available: {', '.join(IMAGENET)}); use --weights none or a previous run"
        )
    if model.input_shape[-1] != 3:
        raise EdgeCNNError("--weights imagenet needs --color rgb (the weights were trained on 3-channel images)")
    constructor, stem, _ = IMAGENET[model_name]
    alpha = float(width) if width is not None else 1.0
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, str(alpha))  # MobileNet v1 file names
    path = keras_cache_dir() / stem.format(alpha=alpha, alpha_text=alpha_text)
    if not path.is_file():
        raise EdgeCNNError(
            f"--weights imagenet: {path} is not in the local Keras cache and edgecnn never downloads; "
            f"copy the Keras Applications file there (or set KERAS_HOME) or use --weights none"
        )
    kwargs = {"alpha": alpha} if model_name.startswith("mobilenet") else {}
    application = getattr(keras.applications, constructor)
    return application(include_top=False, weights=str(path), input_shape=model.input_shape[1:], **kwargs), str(path)
