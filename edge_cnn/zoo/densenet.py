"""DenseNet-BC family (Huang et al. 2017, "Densely Connected Convolutional Networks").

Matches torchvision ``densenet.py``: every layer sees the concatenation of all earlier feature maps
of its block; bottleneck BN-ReLU-1x1 conv (4 * growth_rate) then BN-ReLU-3x3 conv (growth_rate);
transitions BN-ReLU-1x1 conv (compression 0.5) -> 2x2 average pool. The paper's pre-activation
order BN -> ReLU -> Conv is kept: no activation is fused into a convolution, so QAT still works.
"""

from __future__ import annotations

import math

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import BN_EPSILON, BN_MOMENTUM, activation, classifier_head
from edge_cnn.zoo.registry import register_model
from edge_cnn.zoo.resnet import imagenet_stem

_BOTTLENECK_FACTOR = 4  # torchvision bn_size: the 1x1 bottleneck has 4 * growth_rate channels
_STEM_FEATURES = 64


def _bn_relu_conv(x, filters: int, kernel_size: int, *, name: str):
    """Pre-activation unit: BatchNormalization -> ReLU -> Conv2D (no bias)."""
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    x = activation(x, "relu", f"{name}_relu")
    return layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)


def dense_layer(x, growth_rate: int, *, name: str):
    """Bottleneck (1x1) then 3x3 producing ``growth_rate`` new maps, appended to the input."""
    new_maps = _bn_relu_conv(x, _BOTTLENECK_FACTOR * growth_rate, 1, name=f"{name}_1")
    new_maps = _bn_relu_conv(new_maps, growth_rate, 3, name=f"{name}_2")
    return layers.Concatenate(name=f"{name}_concat")([x, new_maps])


def transition(x, compression: float, *, name: str):
    """Compress the channels (1x1) and halve the resolution (2x2 average pool, floor like PyTorch)."""
    x = _bn_relu_conv(x, int(math.floor(x.shape[-1] * compression)), 1, name=name)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _check_options(growth_rate, compression):
    if int(growth_rate) < 1:
        raise EdgeCNNError(f"densenet growth_rate must be a positive integer; got {growth_rate}")
    if not 0.0 < float(compression) <= 1.0:
        raise EdgeCNNError(f"densenet compression must be in (0, 1]; got {compression}")


def _densenet(name: str, input_shape, num_classes: int, include_top: bool, block_depths, growth_rate, compression):
    """Stem -> dense blocks separated by transitions -> BN -> ReLU -> GAP -> dense softmax."""
    _check_options(growth_rate, compression)
    inputs = keras.Input(input_shape, name="image")
    x = imagenet_stem(inputs, _STEM_FEATURES, name="conv0")
    for block, depth in enumerate(block_depths, start=1):
        for index in range(1, depth + 1):
            x = dense_layer(x, int(growth_rate), name=f"denseblock{block}_layer{index}")
        if block < len(block_depths):
            x = transition(x, float(compression), name=f"transition{block}")
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="norm5")(x)
    x = activation(x, "relu", "norm5_relu")
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name=name)


@register_model("densenet", min_input_size=32)
def densenet121(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, growth_rate=32, compression=0.5):
    """DenseNet-121 (Huang et al. 2017, DenseNet-BC, blocks 6-12-24-16); torchvision densenet121."""
    return _densenet("densenet121", input_shape, num_classes, include_top, (6, 12, 24, 16), growth_rate, compression)


@register_model("densenet", min_input_size=32)
def densenet169(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, growth_rate=32, compression=0.5):
    """DenseNet-169 (Huang et al. 2017, blocks 6-12-32-32); torchvision densenet169."""
    return _densenet("densenet169", input_shape, num_classes, include_top, (6, 12, 32, 32), growth_rate, compression)


@register_model("densenet", min_input_size=32)
def densenet201(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, growth_rate=32, compression=0.5):
    """DenseNet-201 (Huang et al. 2017, blocks 6-12-48-32); torchvision densenet201."""
    return _densenet("densenet201", input_shape, num_classes, include_top, (6, 12, 48, 32), growth_rate, compression)
