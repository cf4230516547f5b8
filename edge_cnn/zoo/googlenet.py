"""GoogLeNet / Inception v1 (Szegedy et al. 2015) in torchvision's batch-normalized form."""

from __future__ import annotations

import math

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo.layers import BN_MOMENTUM, classifier_head
from edge_cnn.zoo.registry import register_model

GOOGLENET_BN_EPSILON = 1e-3  # torchvision's BasicConv2d uses eps=0.001, not PyTorch's default 1e-5

# Inception modules: name -> (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj), the paper's Table 1.
STAGES = (
    (("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64))),
    (
        ("4a", (192, 96, 208, 16, 48, 64)),
        ("4b", (160, 112, 224, 24, 64, 64)),
        ("4c", (128, 128, 256, 24, 64, 64)),
        ("4d", (112, 144, 288, 32, 64, 64)),
        ("4e", (256, 160, 320, 32, 128, 128)),
    ),
    (("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128))),
)
AUX_AFTER = ("4a", "4d")  # the auxiliary classifiers read these modules' outputs
AUX_MIN_MAP = 4  # the auxiliary heads pool the 4a/4d map to 4x4


def _basic_conv(x, filters: int, kernel_size=1, strides=1, *, name: str):
    """torchvision's BasicConv2d: Conv (no bias) -> BN (eps 1e-3) -> ReLU.

    Private rather than ``layers.conv_bn_act`` because that uses the PyTorch default epsilon (1e-5).
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=GOOGLENET_BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _ceil_pool_size(size: int, pool: int, stride: int) -> int:
    """Output size of PyTorch's MaxPool2d(pool, stride, ceil_mode=True) without padding."""
    out = math.ceil((size - pool) / stride) + 1
    return out - 1 if (out - 1) * stride >= size else out  # PyTorch drops a window starting past the input


def _ceil_pad(size: int, pool: int, stride: int) -> int:
    """Right/bottom padding that makes a 'valid' pool give PyTorch's ceil_mode=True output size."""
    return max((_ceil_pool_size(size, pool, stride) - 1) * stride + pool - size, 0)


def _inception4a_size(size: int) -> int:
    """Map size the auxiliary heads read: conv1 /2 (same padding), then three 3x3/2 ceil-mode pools."""
    size = math.ceil(size / 2)
    for _ in range(3):
        size = _ceil_pool_size(size, 3, 2)
    return size


def _same_pad(size: int, pool: int, stride: int) -> int:
    """Total padding of TF's 'same' pooling (the left side gets half of it, rounded down)."""
    return max((math.ceil(size / stride) - 1) * stride + pool - size, 0)


def _max_pool_ceil(x, pool: int, stride: int, *, name: str):
    """MaxPool with PyTorch's ceil_mode=True (GoogLeNet's 112-56-28-14-7 at 224).

    Where TF's 'same' pads exactly one row/column on the right/bottom it is the same pool (pools 1-3 at
    224); where no overhang is needed, 'valid' (pool 4 at 224). Otherwise the overhang is zero padding,
    equal to PyTorch's ignored overhang because every pool here reads ReLU outputs (>= 0).
    """
    sizes = [int(size) for size in x.shape[1:3]]
    pads = [_ceil_pad(size, pool, stride) for size in sizes]
    if all(pad == 1 == _same_pad(size, pool, stride) for size, pad in zip(sizes, pads)):
        return layers.MaxPooling2D(pool, strides=stride, padding="same", name=name)(x)
    if any(pads):
        x = layers.ZeroPadding2D(((0, pads[0]), (0, pads[1])), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool, strides=stride, name=name)(x)


def _inception(x, channels, *, branch5x5_kernel: int, name: str):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> "5x5"; 3x3 max-pool -> 1x1) concatenated."""
    c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj = channels
    branch1 = _basic_conv(x, c1x1, 1, name=f"{name}_1x1")
    branch2 = _basic_conv(x, c3x3_reduce, 1, name=f"{name}_3x3_reduce")
    branch2 = _basic_conv(branch2, c3x3, 3, name=f"{name}_3x3")
    branch3 = _basic_conv(x, c5x5_reduce, 1, name=f"{name}_5x5_reduce")
    branch3 = _basic_conv(branch3, c5x5, branch5x5_kernel, name=f"{name}_5x5")
    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch4 = _basic_conv(branch4, pool_proj, 1, name=f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([branch1, branch2, branch3, branch4])


def _aux_head(x, num_classes: int, *, name: str):
    """Auxiliary classifier: avg-pool to 4x4 -> 1x1 conv 128 -> FC 1024 ReLU -> dropout 0.7 -> FC softmax.

    torchvision uses AdaptiveAvgPool2d(4x4); a uniform window (stride size // 4, window
    size - 3 * stride) gives the same 4x4 map at any size, the paper's 5x5/3 at 224 (a 14x14 map).
    """
    size = min(int(s) for s in x.shape[1:3])
    stride = size // AUX_MIN_MAP
    x = layers.AveragePooling2D(size - (AUX_MIN_MAP - 1) * stride, strides=stride, name=f"{name}_pool")(x)
    x = _basic_conv(x, 128, 1, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc1")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name=f"{name}_predictions")(x)


def _stem(x):
    """7x7/2 conv -> pool -> 1x1 conv -> 3x3 conv -> pool: 224 -> 112 -> 56 -> 28."""
    x = _basic_conv(x, 64, 7, strides=2, name="conv1")
    x = _max_pool_ceil(x, 3, 2, name="pool1")
    x = _basic_conv(x, 64, 1, name="conv2")
    x = _basic_conv(x, 192, 3, name="conv3")
    return _max_pool_ceil(x, 3, 2, name="pool2")


def _trunk(inputs, branch5x5_kernel: int):
    """Stem and the nine inception modules; returns the last map and the maps the auxiliary heads read."""
    x = _stem(inputs)
    taps = {}
    for stage, modules in enumerate(STAGES, start=3):
        if stage > 3:
            x = _max_pool_ceil(x, 3 if stage == 4 else 2, 2, name=f"pool{stage - 1}")
        for module, channels in modules:
            x = _inception(x, channels, branch5x5_kernel=branch5x5_kernel, name=f"inception{module}")
            taps[module] = x
    return x, [taps[module] for module in AUX_AFTER]


@register_model("googlenet", min_input_size=32)
def googlenet(
    input_shape=(224, 224, 3),
    num_classes=1000,
    include_top=True,
    aux_logits: bool = False,
    branch5x5_kernel: int = 3,
    dropout: float = 0.2,
) -> keras.Model:
    """GoogLeNet: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (Inception v1 with 1x1
    reductions); matches torchvision ``googlenet`` (BasicConv2d = Conv without bias -> BN eps 1e-3 ->
    ReLU; max-pools with ceil_mode, so 112-56-28-14-7 at 224): 6,624,904 parameters at 224x224x3
    with 1000 classes and no auxiliary heads.

    ``branch5x5_kernel``: torchvision's "5x5" branch actually uses a 3x3 kernel (a known quirk kept for
    its pretrained weights) and its parameter count depends on it, so 3 is the default; 5 is the paper.
    ``aux_logits=True`` adds the two auxiliary classifiers (after 4a and 4d) used only in training; the
    model then has three outputs, in torchvision's order: main, aux after 4d, aux after 4a. They need
    ``include_top=True`` and an input of at least 63x63 (a 4x4 map at 4a).
    """
    if branch5x5_kernel not in (3, 5):
        raise EdgeCNNError(
            f"googlenet: branch5x5_kernel must be 3 (torchvision) or 5 (the paper); got {branch5x5_kernel}"
        )
    if aux_logits and not include_top:
        raise EdgeCNNError("googlenet: aux_logits=True needs include_top=True (the auxiliary heads are classifiers)")
    if aux_logits and min(_inception4a_size(int(size)) for size in input_shape[:2]) < AUX_MIN_MAP:
        height, width = input_shape[:2]
        raise EdgeCNNError(
            f"googlenet: aux_logits=True needs a 4x4 map at inception 4a, i.e. an input of at least 63x63; "
            f"got {height}x{width}"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    x, aux_inputs = _trunk(inputs, branch5x5_kernel)
    if not include_top:
        return keras.Model(inputs, x, name="googlenet")
    outputs = classifier_head(x, num_classes, dropout=dropout)
    if not aux_logits:
        return keras.Model(inputs, outputs, name="googlenet")
    aux_outputs = [_aux_head(tap, num_classes, name=f"aux{index}") for index, tap in enumerate(aux_inputs, start=1)]
    return keras.Model(inputs, [outputs, *reversed(aux_outputs)], name="googlenet")
