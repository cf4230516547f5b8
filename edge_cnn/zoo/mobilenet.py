"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018): depthwise separable convolutions."""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import classifier_head, conv_bn_act, dwconv_bn_act, make_divisible
from edge_cnn.zoo.registry import register_model

# v1: (pointwise filters, depthwise stride) of the 13 depthwise separable blocks (the paper's Table 1).
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1))

# v2: (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
V2_LAST_CHANNEL = 1280


def _check_alpha(name: str, alpha: float) -> None:
    if not alpha > 0:
        raise EdgeCNNError(f"{name}: alpha (the width multiplier) must be positive; got {alpha}")


def _separable_block(x, filters: int, strides: int, *, name: str):
    """Depthwise 3x3 -> BN -> ReLU6, then pointwise 1x1 -> BN -> ReLU6."""
    x = dwconv_bn_act(x, 3, strides, act="relu6", name=f"{name}_dw")
    return conv_bn_act(x, filters, 1, act="relu6", name=f"{name}_pw")


@register_model("mobilenet", min_input_size=32, width_option="alpha")
def mobilenet_v1(
    input_shape=(224, 224, 3), num_classes=1000, include_top=True, alpha: float = 1.0, dropout: float = 1e-3
) -> keras.Model:
    """MobileNet v1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
    Applications", arXiv:1704.04861, 2017; matches Keras Applications ``MobileNet`` (alpha 1.0:
    ``count_params()`` 4,253,864 at 224x224x3 with 1000 classes, BN moving statistics included).

    ``alpha`` scales every layer's filters as Keras Applications does (``int(filters * alpha)``). Keras'
    head (GAP -> dropout -> 1x1 conv with bias -> reshape -> softmax) is a GAP -> dropout -> dense here,
    the same function and parameter count. Stride-2 depthwise convolutions use 'same' padding, identical
    to Keras' explicit (0, 1) zero padding on even maps; BN epsilon is the zoo's 1e-5 (Keras: 1e-3).
    """
    _check_alpha("mobilenet_v1", alpha)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_act(inputs, int(32 * alpha), 3, 2, act="relu6", name="conv1")
    for index, (filters, strides) in enumerate(V1_BLOCKS, start=1):
        x = _separable_block(x, int(filters * alpha), strides, name=f"block{index}")
    if include_top:
        x = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, x, name="mobilenet_v1")


def _inverted_residual(x, filters: int, strides: int, expansion: int, *, name: str):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> project 1x1 (linear); residual when shapes match."""
    in_channels = int(x.shape[-1])
    y = x
    if expansion != 1:
        y = conv_bn_act(y, int(round(in_channels * expansion)), 1, act="relu6", name=f"{name}_expand")
    y = dwconv_bn_act(y, 3, strides, act="relu6", name=f"{name}_dw")
    y = conv_bn_act(y, filters, 1, act=None, name=f"{name}_project")
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


@register_model("mobilenet", min_input_size=32, width_option="alpha")
def mobilenet_v2(
    input_shape=(224, 224, 3), num_classes=1000, include_top=True, alpha: float = 1.0, dropout: float = 0.2
) -> keras.Model:
    """MobileNet v2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018;
    matches torchvision ``mobilenet_v2`` (3,504,872 parameters at 224x224x3 with 1000 classes, alpha 1.0,
    BN running statistics excluded as torchvision counts).

    ``alpha`` scales channels with ``make_divisible(c * alpha, 8)``; the last 1x1 conv keeps 1280 channels
    unless alpha > 1, as torchvision and the paper do. Dropout 0.2 before the classifier.
    """
    _check_alpha("mobilenet_v2", alpha)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn_act(inputs, make_divisible(32 * alpha, 8), 3, 2, act="relu6", name="conv1")
    block = 0
    for expansion, channels, repeats, first_stride in V2_SETTINGS:
        for repeat in range(repeats):
            block += 1
            strides = first_stride if repeat == 0 else 1
            x = _inverted_residual(x, make_divisible(channels * alpha, 8), strides, expansion, name=f"block{block}")
    x = conv_bn_act(x, make_divisible(V2_LAST_CHANNEL * max(1.0, alpha), 8), 1, act="relu6", name="conv_last")
    if include_top:
        x = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, x, name="mobilenet_v2")
