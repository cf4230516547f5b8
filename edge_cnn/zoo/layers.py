"""Building blocks shared by the families.

Quantization-friendly order everywhere a family uses BatchNormalization:
Conv2D (no bias, no activation) -> BatchNormalization -> activation, so that
tensorflow-model-optimization's QAT folds BN. No Lambda layers.
"""

from __future__ import annotations

from edge_cnn.keras import layers

BN_EPSILON = 1e-5  # PyTorch's default; the references are torchvision models
BN_MOMENTUM = 0.9  # Keras' 0.99 leaves useless moving statistics after a few short epochs


def activation(x, kind: str | None, name: str):
    """'relu', 'relu6', 'swish', 'sigmoid' or None; ReLU6 as a layer so converters fuse it."""
    if kind is None:
        return x
    if kind == "relu6":
        return layers.ReLU(max_value=6.0, name=name)(x)
    return layers.Activation(kind, name=name)(x)


def conv_bn_act(
    x,
    filters: int,
    kernel_size=3,
    strides=1,
    *,
    groups: int = 1,
    act: str | None = "relu",
    padding: str = "same",
    name: str,
):
    """Conv2D -> BatchNormalization -> activation (act=None for linear bottlenecks)."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, groups=groups, use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def dwconv_bn_act(x, kernel_size=3, strides=1, *, act: str | None = "relu", padding: str = "same", name: str):
    """DepthwiseConv2D -> BatchNormalization -> activation."""
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def squeeze_excite(x, squeeze_channels: int, *, inner_act: str = "relu", name: str):
    """Squeeze-and-excitation (Hu et al. 2018): GAP -> 1x1 reduce -> act -> 1x1 expand -> sigmoid -> scale."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(squeeze_channels, 1, name=f"{name}_reduce")(s)
    s = activation(s, inner_act, f"{name}_{inner_act}")
    s = layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = layers.Activation("sigmoid", name=f"{name}_gate")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (MobileNet/EfficientNet)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def classifier_head(x, num_classes: int, *, dropout: float = 0.0, name: str = "head"):
    """Global average pooling -> dropout -> dense softmax (the head of every modern family)."""
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name=f"{name}_predictions")(x)
