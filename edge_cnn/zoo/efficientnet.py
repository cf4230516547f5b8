"""EfficientNet B0-B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

Matches torchvision ``efficientnet.py``: MBConv blocks (1x1 expand -> depthwise kxk -> SE -> linear
1x1 project, residual when the shape is kept) with SiLU/swish, SE squeezing to
``max(1, block_input_channels // 4)`` with biased 1x1 convolutions and SiLU inside, compound scaling
``make_divisible(channels * width, 8)`` and ``ceil(repeats * depth)``. BatchNormalization epsilon as
torchvision: 1e-5 for B0-B4, 1e-3 for B5-B7 (their weights come from the TF original).
Stochastic depth is left out: it has no parameters and only acts during training.
Strided convolutions pad symmetrically like PyTorch (explicit ZeroPadding2D + "valid").
"""

from __future__ import annotations

import dataclasses
import math

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import BN_EPSILON, BN_MOMENTUM, activation, classifier_head, make_divisible, squeeze_excite
from edge_cnn.zoo.registry import register_model

_ACT = "swish"  # SiLU
_TF_BN_EPSILON = 1e-3  # B5-B7: torchvision keeps the TF original's epsilon
_STEM_CHANNELS = 32
_HEAD_EXPANSION = 4  # the last 1x1 conv has 4x the channels of the last stage (1280 for B0)


@dataclasses.dataclass(frozen=True)
class _Stage:
    """One row of Table 1 of the paper (B0 baseline, before scaling)."""

    expand_ratio: int
    kernel_size: int
    strides: int
    out_channels: int
    repeats: int


_B0_STAGES = (
    _Stage(1, 3, 1, 16, 1),
    _Stage(6, 3, 2, 24, 2),
    _Stage(6, 5, 2, 40, 2),
    _Stage(6, 3, 2, 80, 3),
    _Stage(6, 5, 1, 112, 3),
    _Stage(6, 5, 2, 192, 4),
    _Stage(6, 3, 1, 320, 1),
)


def _conv_bn_act(x, filters, kernel_size, strides=1, *, depthwise=False, act=_ACT, epsilon, name):
    """Conv (no bias) -> BN (the variant's epsilon) -> act, with PyTorch's symmetric padding.

    A private twin of ``layers.conv_bn_act``/``dwconv_bn_act``, which fix epsilon at 1e-5.
    """
    padding = "same"
    if strides > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel_size, strides, padding=padding, use_bias=False, name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def mbconv_block(x, out_channels: int, expand_ratio: int, kernel_size: int, strides: int, *, epsilon, name: str):
    """Inverted residual with squeeze-and-excitation (MnasNet/EfficientNet MBConv)."""
    in_channels = x.shape[-1]
    expanded = make_divisible(in_channels * expand_ratio, 8)
    y = x
    if expanded != in_channels:
        y = _conv_bn_act(y, expanded, 1, epsilon=epsilon, name=f"{name}_expand")
    y = _conv_bn_act(y, None, kernel_size, strides, depthwise=True, epsilon=epsilon, name=f"{name}_depthwise")
    y = squeeze_excite(y, max(1, in_channels // 4), inner_act=_ACT, name=f"{name}_se")
    y = _conv_bn_act(y, out_channels, 1, act=None, epsilon=epsilon, name=f"{name}_project")
    if strides == 1 and in_channels == out_channels:
        y = layers.Add(name=f"{name}_add")([y, x])
    return y


@dataclasses.dataclass(frozen=True)
class _Scaling:
    """Compound scaling of one variant (the paper's phi) and torchvision's BatchNormalization epsilon."""

    width: float
    depth: float
    resolution: int
    epsilon: float = BN_EPSILON


_VARIANTS = {
    "efficientnet_b0": _Scaling(1.0, 1.0, 224),
    "efficientnet_b1": _Scaling(1.0, 1.1, 240),
    "efficientnet_b2": _Scaling(1.1, 1.2, 260),
    "efficientnet_b3": _Scaling(1.2, 1.4, 300),
    "efficientnet_b4": _Scaling(1.4, 1.8, 380),
    "efficientnet_b5": _Scaling(1.6, 2.2, 456, _TF_BN_EPSILON),
    "efficientnet_b6": _Scaling(1.8, 2.6, 528, _TF_BN_EPSILON),
    "efficientnet_b7": _Scaling(2.0, 3.1, 600, _TF_BN_EPSILON),
}


def _default_shape(name: str) -> tuple[int, int, int]:
    side = _VARIANTS[name].resolution
    return (side, side, 3)


def _efficientnet(name: str, input_shape, num_classes: int, include_top: bool, dropout: float):
    """Stem 3x3/2 -> 7 scaled MBConv stages -> 1x1 head conv -> GAP -> dropout -> dense softmax."""
    if not 0.0 <= float(dropout) < 1.0:
        raise EdgeCNNError(f"{name}: dropout must be in [0, 1); got {dropout}")
    scaling = _VARIANTS[name]
    width, depth, epsilon = scaling.width, scaling.depth, scaling.epsilon
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_act(inputs, make_divisible(_STEM_CHANNELS * width, 8), 3, 2, epsilon=epsilon, name="stem")
    for stage_index, stage in enumerate(_B0_STAGES, start=1):
        out_channels = make_divisible(stage.out_channels * width, 8)
        for index in range(int(math.ceil(stage.repeats * depth))):
            x = mbconv_block(
                x, out_channels, stage.expand_ratio, stage.kernel_size, stage.strides if index == 0 else 1,
                epsilon=epsilon, name=f"stage{stage_index}_{index}",
            )
    x = _conv_bn_act(x, _HEAD_EXPANSION * x.shape[-1], 1, epsilon=epsilon, name="top")
    outputs = classifier_head(x, num_classes, dropout=dropout) if include_top else x
    return keras.Model(inputs, outputs, name=name)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b0"), min_input_size=32)
def efficientnet_b0(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, dropout=0.2):
    """EfficientNet-B0 (Tan & Le 2019; width 1.0, depth 1.0, 224px); torchvision efficientnet_b0.

    ``dropout`` before the classifier grows with the variant (0.2 for B0/B1 ... 0.5 for B6/B7).
    """
    return _efficientnet("efficientnet_b0", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b1"), min_input_size=32)
def efficientnet_b1(input_shape=(240, 240, 3), num_classes=1000, include_top=True, *, dropout=0.2):
    """EfficientNet-B1 (Tan & Le 2019; width 1.0, depth 1.1, 240px); torchvision efficientnet_b1."""
    return _efficientnet("efficientnet_b1", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b2"), min_input_size=32)
def efficientnet_b2(input_shape=(260, 260, 3), num_classes=1000, include_top=True, *, dropout=0.3):
    """EfficientNet-B2 (Tan & Le 2019; width 1.1, depth 1.2, 260px); torchvision efficientnet_b2."""
    return _efficientnet("efficientnet_b2", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b3"), min_input_size=32)
def efficientnet_b3(input_shape=(300, 300, 3), num_classes=1000, include_top=True, *, dropout=0.3):
    """EfficientNet-B3 (Tan & Le 2019; width 1.2, depth 1.4, 300px); torchvision efficientnet_b3."""
    return _efficientnet("efficientnet_b3", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b4"), min_input_size=32)
def efficientnet_b4(input_shape=(380, 380, 3), num_classes=1000, include_top=True, *, dropout=0.4):
    """EfficientNet-B4 (Tan & Le 2019; width 1.4, depth 1.8, 380px); torchvision efficientnet_b4."""
    return _efficientnet("efficientnet_b4", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b5"), min_input_size=32)
def efficientnet_b5(input_shape=(456, 456, 3), num_classes=1000, include_top=True, *, dropout=0.4):
    """EfficientNet-B5 (Tan & Le 2019; width 1.6, depth 2.2, 456px); torchvision efficientnet_b5."""
    return _efficientnet("efficientnet_b5", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b6"), min_input_size=32)
def efficientnet_b6(input_shape=(528, 528, 3), num_classes=1000, include_top=True, *, dropout=0.5):
    """EfficientNet-B6 (Tan & Le 2019; width 1.8, depth 2.6, 528px); torchvision efficientnet_b6."""
    return _efficientnet("efficientnet_b6", input_shape, num_classes, include_top, dropout)


@register_model("efficientnet", default_input_shape=_default_shape("efficientnet_b7"), min_input_size=32)
def efficientnet_b7(input_shape=(600, 600, 3), num_classes=1000, include_top=True, *, dropout=0.5):
    """EfficientNet-B7 (Tan & Le 2019; width 2.0, depth 3.1, 600px); torchvision efficientnet_b7."""
    return _efficientnet("efficientnet_b7", input_shape, num_classes, include_top, dropout)
