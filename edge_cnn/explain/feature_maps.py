"""Intermediate feature maps of one image, drawn as one grid row per layer."""

from __future__ import annotations

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.explain.graph import as_single, feature_layers, resolve_layer
from edge_cnn.explain.drawing import pyplot, figure_to_array
from edge_cnn.keras import keras


def pick_layers(model: keras.Model, layers: int | str | list[str] = 4) -> list[str]:
    """``layers``: a count N (N feature-map layers evenly spaced from the first to the last,
    so the grid shows the progression from edges to parts) or layer names (list or comma-separated)."""
    if isinstance(layers, str) and layers.strip().isdigit():
        layers = int(layers)
    if isinstance(layers, int):
        valid = feature_layers(model)
        if layers < 1 or not valid:
            raise EdgeCNNError(f"--layers must be at least 1 and the model needs 4-D layers; got {layers}")
        picks = np.unique(np.linspace(0, len(valid) - 1, min(layers, len(valid))).round().astype(int))
        return [valid[i] for i in picks]
    names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers)
    return [resolve_layer(model, name).name for name in names if name]


def activations(model: keras.Model, image, layers: int | str | list[str] = 4) -> dict[str, np.ndarray]:
    """{layer name: its (h, w, channels) output} for one preprocessed image."""
    names = pick_layers(model, layers)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    outputs = probe(as_single(model, image), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: np.asarray(output[0]) for name, output in zip(names, outputs)}


def activation_grid(maps: dict[str, np.ndarray], channels: int = 8, title: str = "") -> np.ndarray:
    """A figure (uint8 RGB): per layer, its ``channels`` most active maps, each scaled to its
    own range; the row is labelled with the layer's name and shape."""
    plt = pyplot()
    figure = plt.figure(figsize=(1.3 * channels, 1.6 * len(maps) + 0.4), layout="constrained")
    rows = figure.subfigures(len(maps), 1, squeeze=False)[:, 0]
    for row, (name, output) in zip(rows, maps.items()):
        height, width, depth = output.shape
        strongest = np.argsort(output.mean(axis=(0, 1)))[::-1][:channels]
        row.suptitle(f"{name}  ({height}x{width}x{depth}; {len(strongest)} most active channels)", fontsize=9)
        axes = row.subplots(1, channels, squeeze=False)[0]
        for axis in axes:
            axis.set_axis_off()
        for axis, channel in zip(axes, strongest):
            axis.imshow(output[:, :, channel], cmap="viridis")
            axis.set_title(f"#{channel}", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure_to_array(figure)
