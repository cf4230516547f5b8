"""Parameters and multiply-accumulates (MACs) per layer, as in the GoogLeNet paper's table.

What is counted:
- params: every weight except BatchNormalization's moving mean and variance, which are
  running statistics (torchvision calls them buffers), so totals equal torchvision's
  ``sum(p.numel() for p in model.parameters())``.
- MACs: one multiply-accumulate per kernel weight per output position of Conv2D (grouped
  convolutions count ``in_channels / groups`` per output channel), DepthwiseConv2D,
  SeparableConv2D (its depthwise and its pointwise kernel, both at the output positions:
  Keras strides the depthwise step) and Dense. Biases, BatchNormalization, activations,
  pooling, additions and SE gating are not counted; they are a few percent at most, as in
  the published figures.
"""

from __future__ import annotations

import math
from typing import Any


_BUFFERS = ("moving_mean", "moving_variance")


def layer_params(layer) -> int:
    return sum(
        math.prod(w.shape) for w in layer.weights if not any(b in w.name for b in _BUFFERS)
    )


def _shape(tensor_shape) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor_shape)


def _output_shape(layer) -> tuple:
    output = layer.output
    if isinstance(output, (list, tuple)):
        output = output[0]
    return _shape(output.shape)


def _input_shape(layer) -> tuple:
    tensor = layer.input
    if isinstance(tensor, (list, tuple)):
        tensor = tensor[0]
    return _shape(tensor.shape)


def _positions(shape: tuple) -> int:
    """Output positions per example: product of the dimensions between batch and channels."""
    return math.prod(d or 1 for d in shape[1:-1])


def layer_macs(layer) -> int:
    from edge_cnn.keras import layers  # here, so that `import edge_cnn.zoo` needs no TensorFlow

    if isinstance(layer, layers.SeparableConv2D):  # not a Conv2D subclass in tf_keras
        out = _output_shape(layer)
        kh, kw = layer.kernel_size
        depthwise_channels = _input_shape(layer)[-1] * layer.depth_multiplier
        return _positions(out) * depthwise_channels * (kh * kw + out[-1])
    if isinstance(layer, layers.DepthwiseConv2D):
        out = _output_shape(layer)
        kh, kw = layer.kernel_size
        return _positions(out) * out[-1] * kh * kw
    if isinstance(layer, layers.Conv2D):  # includes grouped convolutions
        out = _output_shape(layer)
        kh, kw = layer.kernel_size
        in_channels = _input_shape(layer)[-1]
        return _positions(out) * out[-1] * kh * kw * (in_channels // layer.groups)
    if isinstance(layer, layers.Dense):
        out = _output_shape(layer)
        return _positions(out) * _input_shape(layer)[-1] * layer.units
    return 0


def _geometry(layer) -> str:
    """'7x7/2' for convolutions and pooling, '' otherwise."""
    size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    strides = getattr(layer, "strides", None)
    if not size:
        return ""
    text = "x".join(str(s) for s in size)
    if strides and max(strides) > 1:
        text += "/" + ("x".join(str(s) for s in strides) if len(set(strides)) > 1 else str(strides[0]))
    return text


def _flat_layers(model) -> list:
    """Layers in order, nested models expanded (a trainer model holds its backbone as a sub-model)."""
    from edge_cnn.keras import keras, layers

    flat = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            flat.extend(_flat_layers(layer))
        elif not isinstance(layer, layers.InputLayer):
            flat.append(layer)
    return flat


def profile(model) -> dict[str, Any]:
    """Totals ``{"params", "macs"}`` (per example) and one row per layer for ``edgecnn zoo show``."""
    rows = []
    for layer in _flat_layers(model):
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "kernel/stride": _geometry(layer),
                "output shape": "x".join(str(d) for d in _output_shape(layer)[1:]),
                "params": layer_params(layer),
                "macs": layer_macs(layer),
            }
        )
    return {
        "params": sum(r["params"] for r in rows),
        "macs": sum(r["macs"] for r in rows),
        "layers": rows,
    }
