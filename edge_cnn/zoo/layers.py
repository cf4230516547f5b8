"""Building blocks shared by the families.

Quantization-friendly order everywhere a family uses BatchNormalization:
Conv2D (no bias, no activation) -> BatchNormalization -> activation, so that
tensorflow-model-optimization's QAT folds BN. No Lambda layers.
"""

from __future__ import annotations

from edge_cnn.keras import layers
from edge_cnn.tasks.classify import HEAD_DROPOUT, HEAD_POOL, PREDICTIONS

BN_EPSILON = 1e-5  # PyTorch's default; the references are torchvision models
TF_BN_EPSILON = 1e-3  # Keras' default: families whose reference is Keras Applications (their weights load)
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves useless moving statistics after a few short epochs


def activation(x, kind: str | None, name: str):
    """'relu', 'relu6', 'swish', 'sigmoid', 'hard_sigmoid', 'hard_swish' or None; ReLU6 as a layer so
    converters fuse it. The hard ones are MobileNetV3's (``relu6(x + 3) / 6``), not Keras' 0.2x + 0.5."""
    if kind is None:
        return x
    if kind == "relu6":
        return layers.ReLU(max_value=6.0, name=name)(x)
    if kind == "hard_sigmoid":
        return hard_sigmoid(x, name=name)
    if kind == "hard_swish":
        return layers.Multiply(name=name)([x, hard_sigmoid(x, name=f"{name}_gate")])
    return layers.Activation(kind, name=name)(x)


def hard_sigmoid(x, *, name: str):
    """``relu6(x + 3) / 6`` (Howard et al. 2019) from three standard layers: Rescaling(offset 3) -> ReLU(6)
    -> Rescaling(1/6); no Lambda, no raw TF op. TFLite folds the shift and the clip into the convolution
    before it (or fuses ``x * hard_sigmoid(x)`` into one HARD_SWISH op), ONNX gets Add -> Clip -> Mul; all
    quantize to int8. The offset is a one-element list, not a scalar: tf2onnx's transpose optimizer fails
    on an Add of a 0-d constant after a Conv and then leaves every NCHW<->NHWC Transpose in the graph."""
    x = layers.Rescaling(1.0, offset=[3.0], name=f"{name}_shift")(x)
    x = layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return layers.Rescaling(1.0 / 6.0, name=f"{name}_scale")(x)


def conv_bn_act(
    x,
    filters: int,
    kernel_size=3,
    strides=1,
    *,
    groups: int = 1,
    act: str | None = "relu",
    padding: str = "same",
    epsilon: float = BN_EPSILON,
    scale: bool = True,
    name: str,
):
    """Conv2D -> BatchNormalization -> activation (act=None for linear bottlenecks).

    ``epsilon``/``scale``: the reference's BN (Keras Applications' Inception: 1e-3 and no gamma)."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, groups=groups, use_bias=False, name=f"{name}_conv"
    )(x)
    return bn_act(x, act, epsilon=epsilon, scale=scale, name=name)


def bn_act(x, act: str | None = None, *, epsilon: float = BN_EPSILON, scale: bool = True, name: str):
    """BatchNormalization (``{name}_bn``, the zoo's momentum) -> optional activation ``{name}_{act}``."""
    x = layers.BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, scale=scale, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def dwconv_bn_act(
    x, kernel_size=3, strides=1, *, act: str | None = "relu", padding: str = "same", epsilon: float = BN_EPSILON,
    name: str,
):
    """DepthwiseConv2D -> BatchNormalization -> activation."""
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_dwconv")(x)
    return bn_act(x, act, epsilon=epsilon, name=name)


def sepconv_bn_act(
    x, filters: int, kernel_size=3, strides=1, *, act: str | None = None, padding: str = "same",
    epsilon: float = TF_BN_EPSILON, name: str,
):
    """SeparableConv2D (depthwise then pointwise, no bias) -> BatchNormalization -> activation (Xception, NASNet).

    One layer holding both kernels, as Keras Applications, so its weight files load; converters emit a
    depthwise and a 1x1 convolution, each of which folds BN and quantizes like ``dwconv_bn_act``'s."""
    x = layers.SeparableConv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_sepconv"
    )(x)
    return bn_act(x, act, epsilon=epsilon, name=name)


def squeeze_excite(x, squeeze_channels: int, *, inner_act: str = "relu", gate: str = "sigmoid", name: str):
    """Squeeze-and-excitation (Hu et al. 2018): GAP -> 1x1 reduce -> act -> 1x1 expand -> gate -> scale.

    ``gate`` is 'sigmoid' (SENet, EfficientNet) or 'hard_sigmoid' (MobileNetV3)."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(squeeze_channels, 1, name=f"{name}_reduce")(s)
    s = activation(s, inner_act, f"{name}_{inner_act}")
    s = layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = activation(s, gate, f"{name}_gate")
    return layers.Multiply(name=f"{name}_scale")([x, s])


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (MobileNet/EfficientNet)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def classifier_head(x, num_classes: int, *, dropout: float = 0.0):
    """Global average pooling -> dropout -> dense softmax (the head of every modern family), named
    as the classify task names its head, so a zoo model with its top is a classifier the trainer,
    export and explain understand."""
    x = layers.GlobalAveragePooling2D(name=HEAD_POOL)(x)
    if dropout:
        x = layers.Dropout(dropout, name=HEAD_DROPOUT)(x)
    return layers.Dense(num_classes, activation="softmax", name=PREDICTIONS)(x)
