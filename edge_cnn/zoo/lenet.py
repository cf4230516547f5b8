"""LeNet-5 (LeCun et al. 1998), the classic digit recognizer: conv -> subsample -> conv -> subsample -> dense."""

from __future__ import annotations

from edge_cnn.keras import keras, layers
from edge_cnn.tasks.classify import PREDICTIONS
from edge_cnn.zoo.registry import register_model


def _conv_pool(x, filters: int, *, name: str):
    """5x5 'valid' convolution (tanh) then 2x2 average subsampling (C1/S2 and C3/S4)."""
    x = layers.Conv2D(filters, 5, activation="tanh", name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


@register_model("lenet", default_input_shape=(32, 32, 1), min_input_size=32)
def lenet5(input_shape=(32, 32, 1), num_classes=1000, include_top=True) -> keras.Model:
    """LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document
    Recognition", Proc. IEEE 1998 (the classic use is 10 digit classes on 32x32x1).

    Matches the usual modern reimplementation: the layer sizes of the PyTorch "Neural Networks" tutorial's
    LeNet (C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> C5 120 -> F6 84 -> output), keeping the paper's tanh
    and average subsampling where the tutorial uses ReLU and max-pooling. Choices where the paper differs:
    C3 is fully connected to all 6 S2 maps (the paper's sparse connection table was a 1998 compute
    saving), S2/S4 are plain average pools (no trainable coefficient and bias), the activation is plain
    tanh (not 1.7159 tanh(2x/3)), and the output is a dense softmax instead of Euclidean RBF units.
    With 10 classes that gives 61,706 parameters.

    C5 is a 5x5 convolution, a 1x1 map at 32x32; at larger inputs its map is flattened, so F6 grows with
    the input. ``include_top=False`` ends at C5 (a 4-D map).
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_pool(inputs, 6, name="c1_s2")
    x = _conv_pool(x, 16, name="c3_s4")
    x = layers.Conv2D(120, 5, activation="tanh", name="c5_conv")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(84, activation="tanh", name="f6")(x)
        x = layers.Dense(num_classes, activation="softmax", name=PREDICTIONS)(x)
    return keras.Model(inputs, x, name="lenet5")
