"""MobileFaceNet (Chen, Liu, Gao, Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", CCBR 2018): a face-embedding network of about 1M parameters.

Why a separate family: a face embedding must keep *where* things are on the face (eyes above mouth), and
global average pooling weighs the corners of the last 7x7 map like its centre. The paper replaces it by a
global depthwise convolution (GDConv: a depthwise kernel as large as the map, linear), which learns one
weight per position and channel, then a linear 1x1 convolution to the embedding. Its Table 1, at 112x112:

    conv 3x3/2, 64 -> depthwise 3x3, 64 -> bottlenecks (t, c, n, s): (2, 64, 5, 2), (4, 128, 1, 2),
    (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1) -> conv 1x1, 512 -> linear GDConv 7x7, 512
    -> linear conv 1x1, 128

Bottlenecks are MobileNetV2's (expand 1x1 -> depthwise 3x3 -> linear project 1x1, residual when the
shape is kept) with PReLU instead of ReLU6, as the paper. Every convolution is Conv (no bias) -> BN,
so converters fold BN and int8 quantization sees plain convolutions; PReLU is a built-in layer (TFLite
PRELU, ONNX PRelu), per channel.

The embedding (GDConv -> 1x1 -> BN) belongs to the backbone: without the top the model ends in the
(1, 1, embedding_dim) map, so any head that pools it (the classify task's ``head_pool``, a no-op on one
position) gets the embedding itself as its feature vector. With the top, ``head_pool`` flattens the
embedding and a dense softmax classifies it (the zoo's classifier convention; face training uses a margin
head on the embedding instead, ``edge_cnn.train.margin``).
"""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.tasks.classify import HEAD_POOL, PREDICTIONS
from edge_cnn.zoo.layers import bn_act, make_divisible
from edge_cnn.zoo.registry import register_model

# (expansion t, output channels c, repeats n, first stride s): the paper's Table 1.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
STEM_CHANNELS = 64
LAST_CHANNELS = 512
EMBEDDING_DIM = 128


def _conv_bn_prelu(x, filters: int, kernel_size, strides=1, *, prelu: bool = True, name: str):
    """Conv2D (no bias) -> BN -> per-channel PReLU (its slope shared over height and width)."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return _bn_prelu(x, prelu, name)


def _dw_bn_prelu(x, kernel_size, strides=1, *, prelu: bool = True, padding: str = "same", name: str):
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False,
                               name=f"{name}_dwconv")(x)
    return _bn_prelu(x, prelu, name)


def _bn_prelu(x, prelu: bool, name: str):
    x = bn_act(x, None, name=name)
    return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x) if prelu else x


def _bottleneck(x, filters: int, strides: int, expansion: int, *, name: str):
    """Expand 1x1 (PReLU) -> depthwise 3x3 (PReLU) -> project 1x1 (linear); residual when shapes match."""
    in_channels = int(x.shape[-1])
    y = _conv_bn_prelu(x, in_channels * expansion, 1, name=f"{name}_expand")
    y = _dw_bn_prelu(y, 3, strides, name=f"{name}_dw")
    y = _conv_bn_prelu(y, filters, 1, prelu=False, name=f"{name}_project")
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


@register_model("mobilefacenet", default_input_shape=(112, 112, 3), min_input_size=16, width_option="alpha")
def mobilefacenet(
    input_shape=(112, 112, 3), num_classes=1000, include_top=True, alpha: float = 1.0,
    embedding_dim: int = EMBEDDING_DIM,
) -> keras.Model:
    """MobileFaceNet (Chen et al. 2018, Table 1): 0.99M parameters and 221M MAdds at 112x112 for the
    network up to its 128-d embedding (without the top; counts asserted in tests/test_zoo_mobilefacenet.py).

    ``alpha`` scales every block's channels with ``make_divisible(c * alpha, 8)`` (the paper has one width;
    the embedding size is ``embedding_dim`` whatever alpha). The GDConv kernel is the last map's size,
    (height/16, width/16): 7x7 at 112x112.
    """
    if not alpha > 0:
        raise EdgeCNNError(f"mobilefacenet: alpha (the width multiplier) must be positive; got {alpha}")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise EdgeCNNError(f"mobilefacenet: embedding_dim must be a whole number >= 1; got {embedding_dim!r}")
    height, width = int(input_shape[0]), int(input_shape[1])
    if height % 16 or width % 16:
        raise EdgeCNNError(
            f"mobilefacenet needs an input whose height and width are multiples of 16 (its four stride-2 "
            f"steps end on an exact map for the global depthwise convolution); got {height}x{width}: use e.g. 112x112"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    stem = make_divisible(STEM_CHANNELS * alpha, 8)
    x = _conv_bn_prelu(inputs, stem, 3, 2, name="conv1")
    x = _dw_bn_prelu(x, 3, name="conv2")
    block = 0
    for expansion, channels, repeats, first_stride in BOTTLENECKS:
        for repeat in range(repeats):
            block += 1
            x = _bottleneck(x, make_divisible(channels * alpha, 8), first_stride if repeat == 0 else 1, expansion,
                            name=f"block{block}")
    x = _conv_bn_prelu(x, make_divisible(LAST_CHANNELS * alpha, 8), 1, name="conv_last")
    x = _dw_bn_prelu(x, (height // 16, width // 16), prelu=False, padding="valid", name="gdconv")
    x = _conv_bn_prelu(x, embedding_dim, 1, prelu=False, name="embedding")
    if include_top:
        x = layers.Flatten(name=HEAD_POOL)(x)
        x = layers.Dense(num_classes, activation="softmax", name=PREDICTIONS)(x)
    return keras.Model(inputs, x, name="mobilefacenet")
