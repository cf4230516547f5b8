"""A small conv-BN-ReLU-pool stack with a dense head: the baseline for small datasets."""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import classifier_head, conv_bn_act, make_divisible
from edge_cnn.zoo.registry import register_model

STAGE_FILTERS = (32, 64, 128)


def _stage(x, filters: int, *, strides: int = 1, name: str):
    """3x3 Conv -> BN -> ReLU, then 2x2 max-pool halving the map."""
    x = conv_bn_act(x, filters, 3, strides, name=name)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _small_convnet(input_shape, num_classes, include_top, width, dropout, stem_stride: int, name: str) -> keras.Model:
    if width <= 0:
        raise EdgeCNNError(f"{name}: width must be positive; got {width}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, filters in enumerate(STAGE_FILTERS, start=1):
        x = _stage(x, make_divisible(filters * width, 8), strides=stem_stride if index == 1 else 1, name=f"stage{index}")
    if include_top:
        x = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, x, name=name)


@register_model("small", default_input_shape=(32, 32, 3), min_input_size=8, width_option="width")
def small_convnet(
    input_shape=(32, 32, 3), num_classes=1000, include_top=True, width: float = 1.0, dropout: float = 0.3
) -> keras.Model:
    """The classic CIFAR-style baseline (LeCun et al. 1998's conv-pool pattern with ReLU, Nair & Hinton
    2010, and batch normalization, Ioffe & Szegedy 2015; cf. the Keras "simple CNN" examples):
    three stages of 3x3 Conv-BN-ReLU + 2x2 max-pool with 32/64/128 filters, then global average
    pooling -> dropout -> dense softmax. GAP instead of Flatten keeps the head tiny and the model
    input-size independent, so it trains in seconds on 32x32 images.

    ``width`` multiplies every stage's filters (rounded to a multiple of 8).
    """
    return _small_convnet(input_shape, num_classes, include_top, width, dropout, stem_stride=1, name="small_convnet")


@register_model("small", default_input_shape=(64, 64, 3), min_input_size=16, width_option="width")
def small_convnet_s2(
    input_shape=(64, 64, 3), num_classes=1000, include_top=True, width: float = 1.0, dropout: float = 0.3
) -> keras.Model:
    """``small_convnet`` with a stride-2 first convolution (the strided stem of ResNet, He et al. 2016,
    at 3x3): an image twice as high and wide for the same MACs and parameters. A detector's
    full-resolution windows (64x128 pedestrians) go in as they are cut, with no resize, and the
    first convolution sees every pixel instead of a bilinear average of four.
    """
    return _small_convnet(input_shape, num_classes, include_top, width, dropout, stem_stride=2, name="small_convnet_s2")
