"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) in torchvision's single-tower form."""

from __future__ import annotations

from edge_cnn.keras import keras, layers
from edge_cnn.tasks.classify import PREDICTIONS
from edge_cnn.zoo.registry import register_model

# (filters, kernel, stride, padding, max-pool after): torchvision's alexnet.features
FEATURES = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)


def _conv_relu(x, filters: int, kernel: int, stride: int, padding: int, *, name: str):
    """Biased convolution with ReLU, explicit symmetric zero padding as in PyTorch (no BN in the reference)."""
    x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=f"{name}_conv")(x)


def _classifier(x, num_classes: int, *, dropout: float, name: str = "classifier"):
    """Flatten -> [Dropout -> Dense 4096 ReLU] x 2 -> Dense softmax (AlexNet's head; dropout first, as torchvision)."""
    x = layers.Flatten(name=f"{name}_flatten")(x)
    for index in (1, 2):
        x = layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
        x = layers.Dense(4096, activation="relu", name=f"{name}_fc{index}")(x)
    return layers.Dense(num_classes, activation="softmax", name=PREDICTIONS)(x)


@register_model("alexnet", default_input_shape=(224, 224, 3), min_input_size=63)
def alexnet(input_shape=(224, 224, 3), num_classes=1000, include_top=True, dropout: float = 0.5) -> keras.Model:
    """AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
    Networks", NeurIPS 2012; matches torchvision ``alexnet`` (the one-GPU variant of Krizhevsky 2014,
    "One weird trick": 64/192/384/256/256 filters, no local response normalization), 61,100,840
    parameters at 224x224x3 with 1000 classes, and its spatial sizes 55-27-13-6.

    torchvision's AdaptiveAvgPool2d(6x6) before the classifier is the identity at 224 (the map is 6x6);
    here the map is flattened as in the paper, so at other input sizes the first dense layer grows or
    shrinks with the map (at 63x63, the minimum, the map is 1x1).
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, (filters, kernel, stride, padding, pool) in enumerate(FEATURES, start=1):
        x = _conv_relu(x, filters, kernel, stride, padding, name=f"conv{index}")
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{index}")(x)
    if include_top:
        x = _classifier(x, num_classes, dropout=dropout)
    return keras.Model(inputs, x, name="alexnet")
