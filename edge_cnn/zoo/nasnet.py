"""NASNet-A Mobile, 4 @ 1056 (Zoph et al., "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018): cells found by architecture search, stacked as stem -> 2 reduction cells ->
(4 normal cells -> reduction cell) x 2 -> 4 normal cells, 1056 channels before pooling.

Layer for layer Keras Applications' ``NASNetMobile`` (whose cells follow the paper's Figure 4 and the
TF-slim implementation): every cell takes the two previous cells' outputs (``p`` is adjusted to the
current one's size by a factorized reduction or a 1x1 projection), separable-convolution branches apply
ReLU -> SeparableConv2D -> BN twice, and the cell concatenates its branch sums. Strided separable
convolutions and pools pad explicitly with Keras' ``correct_pad`` (ZeroPadding2D, then 'valid'); the
factorized reduction's second path shifts the map by one pixel (ZeroPadding2D + Cropping2D) before its
1x1/2 average pool. All convolutions are bias-free; the stem conv has no activation after its BN. So the
parameter count equals Keras' and its ``.h5`` weights load. BN epsilon is Keras' 1e-3 (its weights'
statistics need it), momentum the zoo's 0.9 (Keras: 0.9997).
"""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import TF_BN_EPSILON, activation, bn_act, classifier_head, sepconv_bn_act
from edge_cnn.zoo.registry import register_model

_STEM_FILTERS = 32
_FILTER_MULTIPLIER = 2  # channels double at each reduction


def _correct_pad(x, kernel_size: int):
    """Keras' ``imagenet_utils.correct_pad``: TF's 'same' padding of a stride-2 window, made explicit."""
    pads = []
    for size in x.shape[1:3]:
        adjust = 1 - int(size) % 2
        pads.append((kernel_size // 2 - adjust, kernel_size // 2))
    return tuple(pads)


def _conv_bn(x, filters: int, *, name: str):
    """1x1 conv (no bias) -> BN, no activation (NASNet applies ReLU before its convolutions)."""
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return bn_act(x, epsilon=TF_BN_EPSILON, name=name)


def _separable_branch(x, filters: int, kernel_size: int, strides: int = 1, *, name: str):
    """(ReLU -> [pad] -> SeparableConv2D -> BN) twice; only the first is strided."""
    x = activation(x, "relu", f"{name}_relu1")
    padding = "same"
    if strides == 2:
        x = layers.ZeroPadding2D(_correct_pad(x, kernel_size), name=f"{name}_pad")(x)
        padding = "valid"
    x = sepconv_bn_act(x, filters, kernel_size, strides, padding=padding, name=f"{name}_1")
    x = activation(x, "relu", f"{name}_relu2")
    return sepconv_bn_act(x, filters, kernel_size, name=f"{name}_2")


def _adjust(p, ip, filters: int, *, name: str):
    """Bring the previous-previous output ``p`` to ``ip``'s width and ``filters`` channels."""
    if p is None:
        return ip
    if p.shape[2] != ip.shape[2]:  # factorized reduction: two offset 1x1/2 paths, each half the channels
        p = activation(p, "relu", f"{name}_adjust_relu")
        p1 = layers.AveragePooling2D(1, strides=2, name=f"{name}_adjust_pool1")(p)
        p1 = layers.Conv2D(filters // 2, 1, use_bias=False, name=f"{name}_adjust_conv1")(p1)
        p2 = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_adjust_pad")(p)
        p2 = layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}_adjust_crop")(p2)
        p2 = layers.AveragePooling2D(1, strides=2, name=f"{name}_adjust_pool2")(p2)
        p2 = layers.Conv2D(filters // 2, 1, use_bias=False, name=f"{name}_adjust_conv2")(p2)
        p = layers.Concatenate(name=f"{name}_adjust_concat")([p1, p2])
        return bn_act(p, epsilon=TF_BN_EPSILON, name=f"{name}_adjust")
    if p.shape[-1] != filters:
        p = activation(p, "relu", f"{name}_project_relu")
        return _conv_bn(p, filters, name=f"{name}_project")
    return p


def normal_cell(ip, p, filters: int, *, name: str):
    """NASNet-A normal cell: five pairwise sums of separable convs, pools and identities, concatenated."""
    p = _adjust(p, ip, filters, name=name)
    h = _conv_bn(activation(ip, "relu", f"{name}_relu"), filters, name=f"{name}_squeeze")
    x1 = layers.Add(name=f"{name}_add1")(
        [_separable_branch(h, filters, 5, name=f"{name}_left1"),
         _separable_branch(p, filters, 3, name=f"{name}_right1")]
    )
    x2 = layers.Add(name=f"{name}_add2")(
        [_separable_branch(p, filters, 5, name=f"{name}_left2"),
         _separable_branch(p, filters, 3, name=f"{name}_right2")]
    )
    x3 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_left3")(h)
    x3 = layers.Add(name=f"{name}_add3")([x3, p])
    x4_1 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_left4")(p)
    x4_2 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_right4")(p)
    x4 = layers.Add(name=f"{name}_add4")([x4_1, x4_2])
    x5 = layers.Add(name=f"{name}_add5")([_separable_branch(h, filters, 3, name=f"{name}_left5"), h])
    return layers.Concatenate(name=f"{name}_concat")([p, x1, x2, x3, x4, x5]), ip


def reduction_cell(ip, p, filters: int, *, name: str):
    """NASNet-A reduction cell: strided separable convs and 3x3/2 pools, halving the map."""
    p = _adjust(p, ip, filters, name=name)
    h = _conv_bn(activation(ip, "relu", f"{name}_relu"), filters, name=f"{name}_squeeze")
    h3 = layers.ZeroPadding2D(_correct_pad(h, 3), name=f"{name}_pad")(h)
    x1 = layers.Add(name=f"{name}_add1")(
        [_separable_branch(h, filters, 5, 2, name=f"{name}_left1"),
         _separable_branch(p, filters, 7, 2, name=f"{name}_right1")]
    )
    x2_1 = layers.MaxPooling2D(3, strides=2, name=f"{name}_left2")(h3)
    x2 = layers.Add(name=f"{name}_add2")([x2_1, _separable_branch(p, filters, 7, 2, name=f"{name}_right2")])
    x3_1 = layers.AveragePooling2D(3, strides=2, name=f"{name}_left3")(h3)
    x3 = layers.Add(name=f"{name}_add3")([x3_1, _separable_branch(p, filters, 5, 2, name=f"{name}_right3")])
    x4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_left4")(x1)
    x4 = layers.Add(name=f"{name}_add4")([x2, x4])
    x5_1 = _separable_branch(x1, filters, 3, name=f"{name}_left5")
    x5_2 = layers.MaxPooling2D(3, strides=2, name=f"{name}_right5")(h3)
    x5 = layers.Add(name=f"{name}_add5")([x5_1, x5_2])
    return layers.Concatenate(name=f"{name}_concat")([x2, x3, x4, x5]), ip


def _nasnet(name: str, input_shape, num_classes: int, include_top: bool, penultimate_filters: int,
            num_blocks: int):
    """Stem -> reduction x2 -> [normal x num_blocks -> reduction] x2 -> normal x num_blocks -> ReLU -> head."""
    if penultimate_filters % (24 * _FILTER_MULTIPLIER**2) or num_blocks < 1:
        raise EdgeCNNError(
            f"{name}: penultimate_filters must be a positive multiple of 96 and num_blocks at least 1; "
            f"got {penultimate_filters} and {num_blocks}"
        )
    filters = penultimate_filters // 24  # the last cells concatenate 6 branches of 4x filters
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(_STEM_FILTERS, 3, strides=2, use_bias=False, name="stem_conv")(inputs)
    x = bn_act(x, epsilon=TF_BN_EPSILON, name="stem")
    x, p = reduction_cell(x, None, filters // _FILTER_MULTIPLIER**2, name="stem_cell1")
    x, p = reduction_cell(x, p, filters // _FILTER_MULTIPLIER, name="stem_cell2")
    cell = 0
    for stage in range(3):
        stage_filters = filters * _FILTER_MULTIPLIER**stage
        if stage:
            x, p = reduction_cell(x, p, stage_filters, name=f"reduce{stage}")
        for _ in range(num_blocks):
            x, p = normal_cell(x, p, stage_filters, name=f"cell{cell}")
            cell += 1
    x = activation(x, "relu", "top_relu")
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name=name)


@register_model("nasnet", default_input_shape=(224, 224, 3), min_input_size=32)
def nasnet_mobile(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, penultimate_filters=1056,
                  num_blocks=4) -> keras.Model:
    """NASNet-A Mobile 4 @ 1056 (Zoph et al. 2018, Table 2): 5.3M parameters, 564M MACs at 224x224;
    Keras Applications ``NASNetMobile``. ``penultimate_filters``/``num_blocks`` give the other NASNet-A
    N @ F sizes of the paper's tables (Keras' ``NASNet``; NASNet-Large also skips the reduction output,
    which is not offered here)."""
    return _nasnet("nasnet_mobile", input_shape, num_classes, include_top, penultimate_filters, num_blocks)
