"""MobileNet v3 Large and Small (Howard et al., "Searching for MobileNetV3", ICCV 2019).

Layer for layer Keras Applications' ``MobileNetV3Large``/``MobileNetV3Small`` (the paper's Tables 1 and
2): inverted residuals with squeeze-and-excitation (GAP -> 1x1 -> ReLU -> 1x1 -> hard sigmoid, squeezing
to ``make_divisible(expanded / 4)``) and hard-swish in the later blocks. So the parameter counts equal
Keras' and its ``.h5`` weights load (``build(name, weights=FILE)``), with these differences:

- No ``Rescaling(1/127.5, offset=-1)`` at the input: the zoo's input is already normalized by the run's
  preprocessing (``PreprocessSpec(scale=1/127.5, mean=1, std=1)`` reproduces Keras' [-1, 1]).
- Hard sigmoid is Rescaling(offset 3) -> ReLU(6) -> Rescaling(1/6) (``layers.hard_sigmoid``) instead of
  Keras' raw ``x + 3.0`` / ``* (1/6)`` tensor ops (TFOpLambda layers); the same arithmetic. It quantizes:
  full-integer TFLite fuses ``x * hard_sigmoid(x)`` into one int8 HARD_SWISH op and folds the SE gate's
  shift and clip into its convolution; in ONNX QDQ the Add/Mul ops run as onnxruntime's QLinearAdd/QLinearMul.
- Stride-2 depthwise convolutions use 'same' padding: identical to Keras' explicit ``correct_pad``
  ZeroPadding2D + 'valid' for every kernel size and input parity (``k//2 - 1`` rows/columns before and
  ``k//2`` after on even sizes, ``k//2`` on both sides on odd ones, in both).
- The classifier ends in a ``Softmax`` layer (Keras: ``Activation('softmax')``) so export can take the
  logits; head_pool (GAP) -> 1x1 conv with bias -> hard-swish -> dropout -> 1x1 conv -> flatten -> softmax,
  as Keras and the paper (the 1x1 convolutions after pooling are Dense layers in effect).
- BatchNormalization epsilon 1e-3 as Keras (the weights' statistics need it), momentum the zoo's 0.9.

``minimalistic`` (the paper's "minimalistic" models): 3x3 kernels, ReLU, no SE, no hard-swish.
``alpha`` scales the block widths with ``make_divisible(c * alpha, 8)``; the 16-channel stem is fixed and
the last 1x1 (1024/1280) grows only for alpha > 1, as Keras.
"""

from __future__ import annotations

import dataclasses

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.tasks.classify import HEAD_DROPOUT, HEAD_POOL, PREDICTIONS
from edge_cnn.zoo.layers import TF_BN_EPSILON, activation, conv_bn_act, dwconv_bn_act, make_divisible, squeeze_excite
from edge_cnn.zoo.registry import register_model

_HS = "hard_swish"
_SE_RATIO = 0.25
_STEM_CHANNELS = 16
_LAST_CONV_EXPANSION = 6  # the last 1x1 conv before pooling has 6x the channels of the last block


@dataclasses.dataclass(frozen=True)
class _Block:
    """One row of the paper's Table 1/2: kernel, expansion (of the input channels), output channels,
    SE, nonlinearity, stride. ``kernel`` 5 and ``act`` hard-swish become 3 and ReLU when minimalistic."""

    kernel: int
    expansion: float
    channels: int
    se: bool
    act: str
    strides: int


_LARGE = (
    _Block(3, 1, 16, False, "relu", 1),
    _Block(3, 4, 24, False, "relu", 2),
    _Block(3, 3, 24, False, "relu", 1),
    _Block(5, 3, 40, True, "relu", 2),
    _Block(5, 3, 40, True, "relu", 1),
    _Block(5, 3, 40, True, "relu", 1),
    _Block(3, 6, 80, False, _HS, 2),
    _Block(3, 2.5, 80, False, _HS, 1),
    _Block(3, 2.3, 80, False, _HS, 1),
    _Block(3, 2.3, 80, False, _HS, 1),
    _Block(3, 6, 112, True, _HS, 1),
    _Block(3, 6, 112, True, _HS, 1),
    _Block(5, 6, 160, True, _HS, 2),
    _Block(5, 6, 160, True, _HS, 1),
    _Block(5, 6, 160, True, _HS, 1),
)
_SMALL = (
    _Block(3, 1, 16, True, "relu", 2),
    _Block(3, 72 / 16, 24, False, "relu", 2),
    _Block(3, 88 / 24, 24, False, "relu", 1),
    _Block(5, 4, 40, True, _HS, 2),
    _Block(5, 6, 40, True, _HS, 1),
    _Block(5, 6, 40, True, _HS, 1),
    _Block(5, 3, 48, True, _HS, 1),
    _Block(5, 3, 48, True, _HS, 1),
    _Block(5, 6, 96, True, _HS, 2),
    _Block(5, 6, 96, True, _HS, 1),
    _Block(5, 6, 96, True, _HS, 1),
)
_LAST_POINT_CHANNELS = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}


def inverted_residual_se(x, block: _Block, out_channels: int, *, minimalistic: bool, expand: bool, name: str):
    """[1x1 expand -> BN -> act] -> depthwise kxk -> BN -> act -> [SE] -> 1x1 project -> BN (+ input)."""
    kernel = 3 if minimalistic else block.kernel
    act = "relu" if minimalistic else block.act
    in_channels = int(x.shape[-1])
    expanded = make_divisible(in_channels * block.expansion, 8)
    y = conv_bn_act(x, expanded, 1, act=act, name=f"{name}_expand", epsilon=TF_BN_EPSILON) if expand else x
    y = dwconv_bn_act(y, kernel, block.strides, act=act, name=f"{name}_depthwise", epsilon=TF_BN_EPSILON)
    if block.se and not minimalistic:
        y = squeeze_excite(y, make_divisible(expanded * _SE_RATIO, 8), gate="hard_sigmoid", name=f"{name}_se")
    y = conv_bn_act(y, out_channels, 1, act=None, name=f"{name}_project", epsilon=TF_BN_EPSILON)
    if block.strides == 1 and in_channels == out_channels:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _mobilenet_v3(name, blocks, input_shape, num_classes: int, include_top: bool, *, alpha: float = 1.0,
                  minimalistic: bool = False, dropout: float = 0.2):
    """Stem 3x3/2 (16) -> blocks -> 1x1 (6x) -> [GAP -> 1x1 with bias -> act -> dropout -> 1x1 -> softmax]."""
    if not alpha > 0:
        raise EdgeCNNError(f"{name}: alpha (the width multiplier) must be positive; got {alpha}")
    if not 0.0 <= float(dropout) < 1.0:
        raise EdgeCNNError(f"{name}: dropout must be in [0, 1); got {dropout}")
    act = "relu" if minimalistic else _HS
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn_act(inputs, _STEM_CHANNELS, 3, 2, act=act, name="stem", epsilon=TF_BN_EPSILON)
    for index, block in enumerate(blocks):
        out_channels = make_divisible(block.channels * alpha, 8)
        # Keras' first block has no expansion conv (expansion 1), whatever its input width
        x = inverted_residual_se(x, block, out_channels, minimalistic=minimalistic, expand=index > 0,
                                 name=f"block{index}")
    x = conv_bn_act(x, make_divisible(int(x.shape[-1]) * _LAST_CONV_EXPANSION, 8), 1, act=act, name="top",
                    epsilon=TF_BN_EPSILON)
    if include_top:
        last_point = _LAST_POINT_CHANNELS[name]
        last_point = make_divisible(last_point * alpha, 8) if alpha > 1.0 else last_point
        x = layers.GlobalAveragePooling2D(keepdims=True, name=HEAD_POOL)(x)
        x = layers.Conv2D(last_point, 1, name="head_conv")(x)
        x = activation(x, act, f"head_{act}")
        if dropout:
            x = layers.Dropout(dropout, name=HEAD_DROPOUT)(x)
        x = layers.Conv2D(num_classes, 1, name="head_logits")(x)
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Softmax(name=PREDICTIONS)(x)
    return keras.Model(inputs, x, name=name)


@register_model("mobilenet_v3", min_input_size=32, width_option="alpha")
def mobilenet_v3_large(input_shape=(224, 224, 3), num_classes=1000, include_top=True, **options) -> keras.Model:
    """MobileNetV3-Large (Howard et al. 2019, Table 1): 219M MACs, 5.4M parameters at 224 (alpha 1.0);
    Keras Applications ``MobileNetV3Large``. Options: ``alpha``, ``minimalistic``, ``dropout``."""
    return _mobilenet_v3("mobilenet_v3_large", _LARGE, input_shape, num_classes, include_top, **options)


@register_model("mobilenet_v3", min_input_size=32, width_option="alpha")
def mobilenet_v3_small(input_shape=(224, 224, 3), num_classes=1000, include_top=True, **options) -> keras.Model:
    """MobileNetV3-Small (Howard et al. 2019, Table 2): 56M MACs, 2.5M parameters at 224 (alpha 1.0);
    Keras Applications ``MobileNetV3Small``. Options: ``alpha``, ``minimalistic``, ``dropout``."""
    return _mobilenet_v3("mobilenet_v3_small", _SMALL, input_shape, num_classes, include_top, **options)
