"""ResNet family: ResNet-18..152, Wide ResNet, ResNeXt and SE-ResNet (one shared builder).

Matches torchvision ``resnet.py`` (ResNet v1.5: the stride of a bottleneck sits on its 3x3
convolution) layer for layer, so the parameter counts equal torchvision's. Convolutions that
downsample pad symmetrically like PyTorch (explicit ZeroPadding2D + "valid") instead of Keras'
bottom-right "same" padding, so every window sees the same pixels as in torchvision.
"""

from __future__ import annotations

from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import activation, classifier_head, conv_bn_act, squeeze_excite
from edge_cnn.zoo.registry import register_model

_BOTTLENECK_EXPANSION = 4
_STAGE_WIDTHS = (64, 128, 256, 512)


def padded_conv_bn_act(x, filters: int, kernel_size: int, strides: int = 1, *, groups: int = 1, act="relu", name: str):
    """Conv -> BN -> act with PyTorch's symmetric ``kernel_size // 2`` padding when strided."""
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return conv_bn_act(x, filters, kernel_size, strides, groups=groups, act=act, padding="valid", name=name)
    return conv_bn_act(x, filters, kernel_size, strides, groups=groups, act=act, name=name)


def imagenet_stem(x, filters: int = 64, name: str = "conv1"):
    """7x7/2 conv -> BN -> ReLU -> 3x3/2 max pool (padding 3 and 1 as torchvision): 4x downsampling.

    Zero padding before the max pool is exact because its input is post-ReLU (>= 0).
    """
    x = padded_conv_bn_act(x, filters, 7, 2, name=name)
    x = layers.ZeroPadding2D(1, name=f"{name}_pool_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)


def _shortcut(x, filters: int, strides: int, name: str):
    """Identity, or a 1x1 projection + BN where the shape changes (option B of He et al.)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return conv_bn_act(x, filters, 1, strides, act=None, name=f"{name}_downsample")


def basic_block(x, planes: int, strides: int, *, name: str):
    """Two 3x3 convolutions (ResNet-18/34)."""
    shortcut = _shortcut(x, planes, strides, name)
    y = padded_conv_bn_act(x, planes, 3, strides, name=f"{name}_conv1")
    y = conv_bn_act(y, planes, 3, act=None, name=f"{name}_conv2")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return activation(y, "relu", f"{name}_out")


def bottleneck_block(
    x, planes: int, strides: int, *, groups: int = 1, width_per_group: int = 64, se_reduction=None, name: str
):
    """1x1 reduce -> 3x3 (strided, grouped) -> 1x1 expand x4, optional SE before the residual add.

    ``width = planes * width_per_group / 64 * groups`` as torchvision: 64 and 1 give ResNet,
    128 gives Wide ResNet-*-2, (32 groups, 4 or 8 per group) give ResNeXt.
    """
    width = int(planes * (width_per_group / 64.0)) * groups
    out_channels = planes * _BOTTLENECK_EXPANSION
    shortcut = _shortcut(x, out_channels, strides, name)
    y = conv_bn_act(x, width, 1, name=f"{name}_conv1")
    y = padded_conv_bn_act(y, width, 3, strides, groups=groups, name=f"{name}_conv2")
    y = conv_bn_act(y, out_channels, 1, act=None, name=f"{name}_conv3")
    if se_reduction:
        y = squeeze_excite(y, out_channels // se_reduction, inner_act="relu", name=f"{name}_se")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return activation(y, "relu", f"{name}_out")


def _resnet(name: str, input_shape, num_classes: int, include_top: bool, block, depths, **block_options):
    """Stem -> four stages (the first block of stages 2-4 downsamples) -> GAP -> dense softmax."""
    inputs = keras.Input(input_shape, name="image")
    x = imagenet_stem(inputs)
    for stage, (planes, depth) in enumerate(zip(_STAGE_WIDTHS, depths), start=1):
        for index in range(depth):
            strides = 2 if stage > 1 and index == 0 else 1
            x = block(x, planes, strides, name=f"layer{stage}_{index}", **block_options)
    outputs = classifier_head(x, num_classes) if include_top else x
    return keras.Model(inputs, outputs, name=name)


@register_model("resnet", min_input_size=32)
def resnet18(input_shape=(224, 224, 3), num_classes=1000, include_top=True):
    """ResNet-18 (He et al. 2016, "Deep Residual Learning for Image Recognition"); torchvision resnet18."""
    return _resnet("resnet18", input_shape, num_classes, include_top, basic_block, (2, 2, 2, 2))


@register_model("resnet", min_input_size=32)
def resnet34(input_shape=(224, 224, 3), num_classes=1000, include_top=True):
    """ResNet-34 (He et al. 2016); torchvision resnet34."""
    return _resnet("resnet34", input_shape, num_classes, include_top, basic_block, (3, 4, 6, 3))


@register_model("resnet", min_input_size=32)
def resnet50(input_shape=(224, 224, 3), num_classes=1000, include_top=True):
    """ResNet-50 (He et al. 2016), bottleneck blocks; torchvision resnet50 (v1.5 stride placement)."""
    return _resnet("resnet50", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 6, 3))


@register_model("resnet", min_input_size=32)
def resnet101(input_shape=(224, 224, 3), num_classes=1000, include_top=True):
    """ResNet-101 (He et al. 2016); torchvision resnet101."""
    return _resnet("resnet101", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 23, 3))


@register_model("resnet", min_input_size=32)
def resnet152(input_shape=(224, 224, 3), num_classes=1000, include_top=True):
    """ResNet-152 (He et al. 2016); torchvision resnet152."""
    return _resnet("resnet152", input_shape, num_classes, include_top, bottleneck_block, (3, 8, 36, 3))


@register_model("wide_resnet", min_input_size=32)
def wide_resnet50_2(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, width_per_group=128):
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): bottlenecks twice as wide; torchvision wide_resnet50_2."""
    return _resnet(
        "wide_resnet50_2", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 6, 3),
        width_per_group=width_per_group,
    )


@register_model("wide_resnet", min_input_size=32)
def wide_resnet101_2(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, width_per_group=128):
    """Wide ResNet-101-2 (Zagoruyko & Komodakis 2016); torchvision wide_resnet101_2."""
    return _resnet(
        "wide_resnet101_2", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 23, 3),
        width_per_group=width_per_group,
    )


@register_model("resnext", min_input_size=32)
def resnext50_32x4d(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, groups=32, width_per_group=4):
    """ResNeXt-50 32x4d (Xie et al. 2017, "Aggregated Residual Transformations"): grouped 3x3
    convolutions (cardinality 32); torchvision resnext50_32x4d."""
    return _resnet(
        "resnext50_32x4d", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 6, 3),
        groups=groups, width_per_group=width_per_group,
    )


@register_model("resnext", min_input_size=32)
def resnext101_32x8d(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, groups=32, width_per_group=8):
    """ResNeXt-101 32x8d (Xie et al. 2017); torchvision resnext101_32x8d."""
    return _resnet(
        "resnext101_32x8d", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 23, 3),
        groups=groups, width_per_group=width_per_group,
    )


@register_model("se_resnet", min_input_size=32)
def se_resnet50(input_shape=(224, 224, 3), num_classes=1000, include_top=True, *, se_reduction=16):
    """SE-ResNet-50 (Hu et al. 2018, "Squeeze-and-Excitation Networks"): ResNet-50 with SE (reduction 16,
    biased 1x1 convolutions) on each bottleneck's output before the residual add (as imgclsmob's seresnet50)."""
    return _resnet(
        "se_resnet50", input_shape, num_classes, include_top, bottleneck_block, (3, 4, 6, 3),
        se_reduction=se_reduction,
    )
