"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017).

Layer for layer Keras Applications' ``Xception`` (the paper's Figure 5): entry flow (two plain 3x3
convolutions, then three blocks of two separable convolutions + 3x3/2 max pool with a strided 1x1
projection shortcut), middle flow (8 residual blocks of three 728-channel separable convolutions), exit
flow (one more downsampling block, then 1536- and 2048-channel separable convolutions) and a GAP ->
dense softmax head. The parameter count equals Keras' and its ``.h5`` weights load. Separable
convolutions are single ``SeparableConv2D`` layers (depthwise and pointwise kernels, no bias) followed by
BatchNormalization; ReLU comes before each separable convolution as in the paper (pre-activation inside
the blocks), BN epsilon is Keras' 1e-3 (its weights' statistics need it), momentum the zoo's 0.9.
The first two convolutions are 'valid' as in Keras (299 -> 149 -> 147), so the smallest input is 71.
"""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import TF_BN_EPSILON, activation, classifier_head, conv_bn_act, sepconv_bn_act
from edge_cnn.zoo.registry import register_model

_ENTRY_WIDTHS = (128, 256, 728)
_MIDDLE_WIDTH = 728
_EXIT_WIDTHS = (728, 1024)  # the two separable convolutions of the last downsampling block
_TOP_WIDTHS = (1536, 2048)


def _downsampling_block(x, widths, *, first_relu: bool, name: str):
    """[ReLU] -> sepconv -> BN -> ReLU -> sepconv -> BN -> 3x3/2 max pool, plus a 1x1/2 conv -> BN shortcut."""
    shortcut = conv_bn_act(x, widths[1], 1, 2, act=None, epsilon=TF_BN_EPSILON, name=f"{name}_shortcut")
    if first_relu:
        x = activation(x, "relu", f"{name}_relu1")
    x = sepconv_bn_act(x, widths[0], 3, act="relu", name=f"{name}_sep1")
    x = sepconv_bn_act(x, widths[1], 3, name=f"{name}_sep2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


def _middle_block(x, *, name: str):
    """Three times ReLU -> 728-channel sepconv -> BN, plus the identity."""
    y = x
    for index in range(1, 4):
        y = activation(y, "relu", f"{name}_relu{index}")
        y = sepconv_bn_act(y, _MIDDLE_WIDTH, 3, name=f"{name}_sep{index}")
    return layers.Add(name=f"{name}_add")([y, x])


@register_model("xception", default_input_shape=(299, 299, 3), min_input_size=71)
def xception(input_shape=(299, 299, 3), num_classes=1000, include_top=True, *, middle_blocks: int = 8
             ) -> keras.Model:
    """Xception (Chollet 2017): 22.9M parameters, 8.4G MACs at 299x299; Keras Applications ``Xception``.

    ``middle_blocks``: how often the middle flow repeats (the paper's 8; fewer gives a shallower net)."""
    if int(middle_blocks) < 0:
        raise EdgeCNNError(f"xception: middle_blocks must be 0 or more; got {middle_blocks}")
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn_act(inputs, 32, 3, 2, padding="valid", epsilon=TF_BN_EPSILON, name="block1_conv1")
    x = conv_bn_act(x, 64, 3, padding="valid", epsilon=TF_BN_EPSILON, name="block1_conv2")
    for index, width in enumerate(_ENTRY_WIDTHS, start=2):
        x = _downsampling_block(x, (width, width), first_relu=index > 2, name=f"block{index}")
    for index in range(5, 5 + int(middle_blocks)):
        x = _middle_block(x, name=f"block{index}")
    x = _downsampling_block(x, _EXIT_WIDTHS, first_relu=True, name="block13")  # "block13" whatever the depth
    for index, width in enumerate(_TOP_WIDTHS, start=1):
        x = sepconv_bn_act(x, width, 3, act="relu", name=f"block14_sep{index}")
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name="xception")
