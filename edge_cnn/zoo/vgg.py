"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convolutions between 2x2 max-pools.

Choices shared by the four depths:
- torchvision's AdaptiveAvgPool2d(7x7) before the classifier is the identity at 224 (the map is 7x7);
  here the map is flattened as in the paper, so the first dense layer follows the input size
  (512 inputs at 32x32, the minimum).
- ``batch_norm=True`` is torchvision's ``vgg*_bn`` except that the convolutions have no bias
  (Conv -> BN -> ReLU, so QAT can fold BN; a bias before BN is redundant). In the torchvision count
  (BN moving statistics excluded) that is one parameter per conv filter more than the plain model
  (+2 BN, -1 bias) and one fewer than torchvision's ``vgg*_bn``.
"""

from __future__ import annotations

from edge_cnn.keras import keras, layers
from edge_cnn.tasks.classify import PREDICTIONS
from edge_cnn.zoo.layers import conv_bn_act
from edge_cnn.zoo.registry import register_model

# Filters per convolution, one tuple per stage (each stage ends with a 2x2 max-pool): configs A, B, D, E.
STAGES = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


def _conv(x, filters: int, *, batch_norm: bool, name: str):
    """3x3 'same' convolution: biased with ReLU (plain VGG) or Conv (no bias) -> BN -> ReLU."""
    if batch_norm:
        return conv_bn_act(x, filters, 3, name=name)
    return layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)


def _classifier(x, num_classes: int, *, dropout: float, name: str = "classifier"):
    """Flatten -> [Dense 4096 ReLU -> Dropout] x 2 -> Dense softmax (torchvision's order)."""
    x = layers.Flatten(name=f"{name}_flatten")(x)
    for index in (1, 2):
        x = layers.Dense(4096, activation="relu", name=f"{name}_fc{index}")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
    return layers.Dense(num_classes, activation="softmax", name=PREDICTIONS)(x)


def _build(name: str, input_shape, num_classes: int, include_top: bool, batch_norm: bool, dropout: float):
    """The configuration ``STAGES[name]``: conv stages each closed by a 2x2 max-pool, then the dense head."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for stage, filters_per_conv in enumerate(STAGES[name], start=1):
        for index, filters in enumerate(filters_per_conv, start=1):
            x = _conv(x, filters, batch_norm=batch_norm, name=f"block{stage}_conv{index}")
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
    if include_top:
        x = _classifier(x, num_classes, dropout=dropout)
    return keras.Model(inputs, x, name=f"{name}_bn" if batch_norm else name)


@register_model("vgg", min_input_size=32)
def vgg11(input_shape=(224, 224, 3), num_classes=1000, include_top=True, batch_norm=False, dropout=0.5) -> keras.Model:
    """VGG-11 (configuration A of Simonyan & Zisserman, "Very Deep Convolutional Networks for
    Large-Scale Image Recognition", ICLR 2015); torchvision ``vgg11``: 132,863,336 parameters at 224/1000."""
    return _build("vgg11", input_shape, num_classes, include_top, batch_norm, dropout)


@register_model("vgg", min_input_size=32)
def vgg13(input_shape=(224, 224, 3), num_classes=1000, include_top=True, batch_norm=False, dropout=0.5) -> keras.Model:
    """VGG-13 (configuration B of Simonyan & Zisserman, ICLR 2015); torchvision ``vgg13``:
    133,047,848 parameters at 224/1000."""
    return _build("vgg13", input_shape, num_classes, include_top, batch_norm, dropout)


@register_model("vgg", min_input_size=32)
def vgg16(input_shape=(224, 224, 3), num_classes=1000, include_top=True, batch_norm=False, dropout=0.5) -> keras.Model:
    """VGG-16 (configuration D of Simonyan & Zisserman, ICLR 2015); torchvision ``vgg16``:
    138,357,544 parameters at 224/1000."""
    return _build("vgg16", input_shape, num_classes, include_top, batch_norm, dropout)


@register_model("vgg", min_input_size=32)
def vgg19(input_shape=(224, 224, 3), num_classes=1000, include_top=True, batch_norm=False, dropout=0.5) -> keras.Model:
    """VGG-19 (configuration E of Simonyan & Zisserman, ICLR 2015); torchvision ``vgg19``:
    143,667,240 parameters at 224/1000."""
    return _build("vgg19", input_shape, num_classes, include_top, batch_norm, dropout)
