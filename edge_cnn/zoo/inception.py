"""Inception v3 (Szegedy et al. 2016) and Inception-ResNet-v2 (Szegedy et al. 2017), as Keras Applications.

Both share Keras' stem (3x3/2, 3x3, 3x3, max pool, 1x1, 3x3, max pool: 299 -> 35x35x192) and its
``conv2d_bn``: Conv2D (no bias) -> BatchNormalization without gamma (``scale=False``; ReLU follows, so a
scale is redundant) and epsilon 1e-3 -> ReLU. Layer for layer Keras' graphs, so the parameter counts
equal Keras' and its ``.h5`` weights load; BN momentum is the zoo's 0.9.
"""

from __future__ import annotations

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import TF_BN_EPSILON, activation, classifier_head, conv_bn_act
from edge_cnn.zoo.registry import register_model


def conv_bn(x, filters: int, kernel_size, strides=1, *, padding: str = "same", name: str):
    """Keras Applications' Inception ``conv2d_bn``: conv (no bias) -> BN (no gamma, epsilon 1e-3) -> ReLU."""
    return conv_bn_act(x, filters, kernel_size, strides, padding=padding, epsilon=TF_BN_EPSILON, scale=False,
                       name=name)


def inception_stem(x):
    """Conv 32 3x3/2 valid -> 32 3x3 valid -> 64 3x3 -> max 3x3/2 -> 80 1x1 -> 192 3x3 valid -> max 3x3/2."""
    x = conv_bn(x, 32, 3, 2, padding="valid", name="stem1")
    x = conv_bn(x, 32, 3, padding="valid", name="stem2")
    x = conv_bn(x, 64, 3, name="stem3")
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool1")(x)
    x = conv_bn(x, 80, 1, padding="valid", name="stem4")
    x = conv_bn(x, 192, 3, padding="valid", name="stem5")
    return layers.MaxPooling2D(3, strides=2, name="stem_pool2")(x)


def _pool_branch(x, filters: int, *, name: str):
    """3x3/1 average pool ('same', TF's count excluding padding) -> 1x1 conv."""
    y = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_avgpool")(x)
    return conv_bn(y, filters, 1, name=f"{name}_conv")


def _chain(x, specs, *, name: str):
    """A branch of consecutive conv_bn: ``specs`` are (filters, kernel) or (filters, kernel, strides, padding)."""
    for index, spec in enumerate(specs, start=1):
        filters, kernel, *rest = spec
        strides, padding = rest if rest else (1, "same")
        x = conv_bn(x, filters, kernel, strides, padding=padding, name=f"{name}_{index}")
    return x


def _reduction(x, branches, *, name: str):
    """Strided conv branches plus a 3x3/2 max pool, concatenated (Inception v3 mixed3/mixed8, IRv2 6a/7a)."""
    outputs = [_chain(x, specs, name=f"{name}_b{index}") for index, specs in enumerate(branches)]
    outputs.append(layers.MaxPooling2D(3, strides=2, name=f"{name}_maxpool")(x))
    return layers.Concatenate(name=name)(outputs)


# --- Inception v3 --------------------------------------------------------------------------------------


def _inception_a(x, pool_filters: int, *, name: str):
    """35x35: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (the paper's Figure 5)."""
    branches = [
        _chain(x, [(64, 1)], name=f"{name}_b1x1"),
        _chain(x, [(48, 1), (64, 5)], name=f"{name}_b5x5"),
        _chain(x, [(64, 1), (96, 3), (96, 3)], name=f"{name}_b3x3dbl"),
        _pool_branch(x, pool_filters, name=f"{name}_pool"),
    ]
    return layers.Concatenate(name=name)(branches)


def _inception_c(x, width: int, *, name: str):
    """17x17 with factorized 7x7 (1x7 and 7x1; the paper's Figure 6), ``width`` channels inside."""
    branches = [
        _chain(x, [(192, 1)], name=f"{name}_b1x1"),
        _chain(x, [(width, 1), (width, (1, 7)), (192, (7, 1))], name=f"{name}_b7x7"),
        _chain(x, [(width, 1), (width, (7, 1)), (width, (1, 7)), (width, (7, 1)), (192, (1, 7))],
               name=f"{name}_b7x7dbl"),
        _pool_branch(x, 192, name=f"{name}_pool"),
    ]
    return layers.Concatenate(name=name)(branches)


def _split_3x3(x, *, name: str):
    """1x3 and 3x1 side by side on the same input, concatenated (the paper's Figure 7)."""
    return layers.Concatenate(name=name)(
        [conv_bn(x, 384, (1, 3), name=f"{name}_1x3"), conv_bn(x, 384, (3, 1), name=f"{name}_3x1")]
    )


def _inception_e(x, *, name: str):
    """8x8 with expanded filter banks: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1."""
    branches = [
        _chain(x, [(320, 1)], name=f"{name}_b1x1"),
        _split_3x3(_chain(x, [(384, 1)], name=f"{name}_b3x3"), name=f"{name}_b3x3_split"),
        _split_3x3(_chain(x, [(448, 1), (384, 3)], name=f"{name}_b3x3dbl"), name=f"{name}_b3x3dbl_split"),
        _pool_branch(x, 192, name=f"{name}_pool"),
    ]
    return layers.Concatenate(name=name)(branches)


@register_model("inception", default_input_shape=(299, 299, 3), min_input_size=75)
def inception_v3(input_shape=(299, 299, 3), num_classes=1000, include_top=True) -> keras.Model:
    """Inception v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016):
    23.8M parameters, 5.7G MACs at 299x299; Keras Applications ``InceptionV3`` (no auxiliary classifier)."""
    inputs = keras.Input(input_shape, name="image")
    x = inception_stem(inputs)
    for index, pool_filters in enumerate((32, 64, 64)):
        x = _inception_a(x, pool_filters, name=f"mixed{index}")
    x = _reduction(x, [[(384, 3, 2, "valid")], [(64, 1), (96, 3), (96, 3, 2, "valid")]], name="mixed3")
    for index, width in enumerate((128, 160, 160, 192), start=4):
        x = _inception_c(x, width, name=f"mixed{index}")
    x = _reduction(
        x, [[(192, 1), (320, 3, 2, "valid")], [(192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2, "valid")]],
        name="mixed8",
    )
    for index in (9, 10):
        x = _inception_e(x, name=f"mixed{index}")
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name="inception_v3")


# --- Inception-ResNet-v2 ---------------------------------------------------------------------------------

# block type -> (residual scale, branches as conv_bn chains): the paper's Figures 16, 17 and 18
_RESIDUAL_BLOCKS = {
    "block35": (0.17, ([(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)])),
    "block17": (0.1, ([(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))])),
    "block8": (0.2, ([(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))])),
}
_REPEATS = (10, 20, 10)  # block35, block17, block8: Keras and the released TF-slim model (the paper draws 5, 10, 5)


def inception_resnet_block(x, block_type: str, *, scale: float, act: str | None = "relu", name: str):
    """Branches -> concat -> 1x1 conv with bias (linear, no BN) -> x scale -> + input -> ReLU.

    The scale is a ``Rescaling`` layer (a multiply by a constant that converters fold into the 1x1
    convolution before it), where Keras uses a custom ``CustomScaleLayer`` (formerly a Lambda)."""
    _, branch_specs = _RESIDUAL_BLOCKS[block_type]
    branches = [_chain(x, specs, name=f"{name}_b{index}") for index, specs in enumerate(branch_specs)]
    mixed = layers.Concatenate(name=f"{name}_mixed")(branches)
    up = layers.Conv2D(int(x.shape[-1]), 1, name=f"{name}_conv")(mixed)
    if scale != 1.0:
        up = layers.Rescaling(scale, name=f"{name}_scale")(up)
    x = layers.Add(name=f"{name}_add")([x, up])
    return activation(x, act, f"{name}_{act}")


@register_model("inception_resnet", default_input_shape=(299, 299, 3), min_input_size=75)
def inception_resnet_v2(input_shape=(299, 299, 3), num_classes=1000, include_top=True, *, repeats=_REPEATS
                        ) -> keras.Model:
    """Inception-ResNet-v2 (Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual
    Connections on Learning", AAAI 2017): 55.8M parameters, ~13.2G MACs at 299x299; Keras Applications
    ``InceptionResNetV2``.

    Structural difference: Keras scales each residual branch with ``CustomScaleLayer`` (a custom Layer
    subclass computing ``x + up * scale``; older Keras used a Lambda); here it is ``Rescaling(scale)``
    followed by ``Add`` (both built-in, no weights, so the parameter count and the weight files are the
    same). The last block8 (scale 1.0, no ReLU) has no Rescaling.

    ``repeats``: how many block35, block17 and block8 modules (Keras' 10, 20, 10; the paper's Figure 15
    draws 5, 10, 5), each at least 1.
    """
    repeats = tuple(int(r) for r in repeats)
    if len(repeats) != 3 or min(repeats) < 1:
        raise EdgeCNNError(f"inception_resnet_v2: repeats must be three counts of at least 1; got {repeats}")
    inputs = keras.Input(input_shape, name="image")
    x = inception_stem(inputs)
    x = layers.Concatenate(name="mixed_5b")(
        [
            _chain(x, [(96, 1)], name="mixed_5b_b0"),
            _chain(x, [(48, 1), (64, 5)], name="mixed_5b_b1"),
            _chain(x, [(64, 1), (96, 3), (96, 3)], name="mixed_5b_b2"),
            _pool_branch(x, 64, name="mixed_5b_pool"),
        ]
    )
    stages = (
        ("block35", [[(384, 3, 2, "valid")], [(256, 1), (256, 3), (384, 3, 2, "valid")]], "mixed_6a"),
        ("block17", [[(256, 1), (384, 3, 2, "valid")], [(256, 1), (288, 3, 2, "valid")],
                     [(256, 1), (288, 3), (320, 3, 2, "valid")]], "mixed_7a"),
        ("block8", None, None),
    )
    for (block_type, reduction, reduction_name), count in zip(stages, repeats):
        scale = _RESIDUAL_BLOCKS[block_type][0]
        for index in range(1, count + 1):
            last = block_type == "block8" and index == count
            x = inception_resnet_block(x, block_type, scale=1.0 if last else scale, act=None if last else "relu",
                                       name=f"{block_type}_{index}")
        if reduction:
            x = _reduction(x, reduction, name=reduction_name)
    x = conv_bn(x, 1536, 1, name="conv_7b")
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name="inception_resnet_v2")
