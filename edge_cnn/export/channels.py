"""Channel (filter) pruning: a genuinely thinner Keras model, with fewer MACs and parameters, not just zeros.

Unstructured pruning and clustering (``optimize``) keep every tensor's shape, so they shrink the gzip
size but not the latency. ``prune_channels`` removes whole output channels of convolutions and
rebuilds the functional model from its own configuration (same layer names and types, only
``filters`` smaller), copying the weights of the channels kept.

Which channels go: those whose BatchNormalization scale |gamma| is smallest (Network Slimming, Liu
et al. 2017: BN multiplies each channel by its gamma, so a small gamma is a small contribution); a
convolution not followed by a scaled BN ranks its filters by their L1 norm (Li et al. 2017). Each
pruned convolution keeps ``max(1, floor((1 - fraction) * channels + 0.5))`` channels (halves round up);
the fraction is one for all, or each convolution's own (``netadapt`` prunes one layer at a time;
``keep_channels`` turns channel counts into such fractions).

What follows a pruned convolution, down to the next convolution or Dense (which lose the matching
input channels, the Dense after Flatten every position of them): every layer that treats channels
independently, i.e. its BatchNormalization, activations, pooling, padding, dropout, Flatten, a channel
Concatenate (each input's kept channels at its offset) and DepthwiseConv2D, which has one filter per
input channel and so cannot choose its own channels: it follows its input's.

What is left alone, the simple safe rule, and why:

- a convolution whose channels reach (through those layers) an Add, Multiply or any other layer that
  combines tensors channel by channel. A residual addition needs the same channels on all its inputs,
  and choosing them jointly for a whole residual stage is a coupled problem this module does not
  solve; so the last convolution of a ResNet block, its projection shortcut, the ResNet stem, a
  MobileNetV2 projection feeding an Add, and SE gates keep all their channels. Convolutions inside a
  block (ResNet's first 3x3, MobileNetV2's expansion with its depthwise) carry most of the MACs and
  are pruned;
- a convolution whose channels reach a model output (its shape is the contract) or a layer not known
  here to be channel-wise (Rescaling, PReLU, SeparableConv2D, a softmax over channels, ...);
- grouped convolutions (their groups would no longer line up) and every Dense: the classifier's
  outputs are the classes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras
from edge_cnn.zoo import profile

# Layers without weights that map each channel to the same channel, alone: activations, pooling,
# padding and resizing, noise and dropout, and Flatten (each channel's positions stay its own).
CHANNELWISE = frozenset(
    {
        "ReLU", "LeakyReLU", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
        "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Dropout", "SpatialDropout2D", "GaussianNoise",
        "GaussianDropout", "Flatten",
    }
)


@dataclasses.dataclass
class _Graph:
    """A flat functional model as names: each layer's inputs and consumers, in topological order."""

    layers: dict[str, Any]
    inbound: dict[str, list[str]]
    consumers: dict[str, list[str]]
    outputs: set[str]


def kept_count(channels: int, fraction: float) -> int:
    """How many of ``channels`` survive pruning ``fraction`` of them: at least one, halves round up."""
    return max(1, math.floor(channels * (1.0 - fraction) + 0.5))


def prunable_convolutions(model) -> dict[str, list[str]]:
    """Each convolution whose output channels can be removed -> the layers its channels flow through
    (and shrink with it) before a convolution or Dense absorbs them."""
    return _chains(_graph(model))


def prune_channels(model, fraction: float | dict[str, float]) -> tuple[Any, dict[str, Any]]:
    """``model`` rebuilt with ``fraction`` of every prunable convolution's channels removed (see the
    module docstring) -> (thinner model, facts: parameters and MACs before/after, channels kept per
    pruned convolution). ``fraction`` may instead map convolution names to their own fractions (the
    per-layer steps of ``netadapt``); prunable convolutions absent from it keep all their channels.
    The source model is left as it was."""
    graph = _graph(model)
    fractions = _fractions(fraction, _chains(graph))
    chosen = {name: _strongest_channels(graph, name, share) for name, share in fractions.items()}
    kept: dict[str, np.ndarray | None] = {}  # layer -> original indices of the output channels it keeps (None: all)
    weights = {}
    for name, layer in graph.layers.items():
        kept[name], weights[name] = _thinned(layer, [kept[source] for source in graph.inbound[name]], chosen.get(name))
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        if entry["name"] in chosen:
            entry["config"]["filters"] = int(len(chosen[entry["name"]]))
        entry.pop("build_config", None)  # the old input shapes; layers are built on the new tensors
    thinner = keras.Model.from_config(config)
    for layer in thinner.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])
    before, after = profile(model), profile(thinner)
    return thinner, {
        "method": "prune_channels",
        "fraction": fractions if isinstance(fraction, dict) else float(fraction),
        "params_before": before["params"],
        "params_after": after["params"],
        "macs_before": before["macs"],
        "macs_after": after["macs"],
        "channels_kept": {
            name: {"kept": int(len(indices)), "of": int(graph.layers[name].filters)} for name, indices in chosen.items()
        },
    }


def keep_channels(model, kept: dict[str, int]) -> tuple[Any, dict[str, Any]]:
    """``prune_channels`` with the channels each named convolution keeps (its strongest ones); the others keep
    all theirs. Why: latency does not follow MACs. On the pedestrian model (fp32 LiteRT, AVX2) 8/16/48
    channels ran 2.17x faster than 16/32/64 and 16/24/48 only 1.19x, so a user who has timed such counts
    (``study deploy``, README) asks for them by name."""
    _require_prunable(kept, prunable_convolutions(model))
    channels = {name: int(model.get_layer(name).filters) for name in kept}
    too_many = {name: f"{count} of {channels[name]}" for name, count in kept.items() if count > channels[name]}
    if too_many:
        raise EdgeCNNError(f"--prune-channels keeps more channels than the layer has: {too_many}")
    fractions = {name: (channels[name] - count) / channels[name] for name, count in kept.items()
                 if count < channels[name]}
    if not fractions:
        raise EdgeCNNError(f"--prune-channels {kept} keeps every channel: nothing to prune")
    return prune_channels(model, fractions)


def _fractions(fraction: float | dict[str, float], prunable: dict[str, list[str]]) -> dict[str, float]:
    """Each convolution to prune -> the fraction of its channels to remove, every one checked."""
    if not isinstance(fraction, dict):
        if not 0.0 < float(fraction) < 1.0:
            raise EdgeCNNError(f"--prune-channels {fraction} must be a fraction between 0 and 1 (e.g. 0.5)")
        return {name: float(fraction) for name in prunable}
    _require_prunable(fraction, prunable)
    bad = {name: share for name, share in fraction.items() if not 0.0 < float(share) < 1.0}
    if bad:
        raise EdgeCNNError(f"channel fractions {bad} must each lie between 0 and 1 (e.g. 0.5)")
    return {name: float(share) for name, share in fraction.items()}


def _require_prunable(names, prunable: dict[str, list[str]]) -> None:
    """Refuse a name that is not a prunable convolution of the model, listing the ones that are."""
    unknown = sorted(set(names) - set(prunable))
    if unknown:
        raise EdgeCNNError(f"{', '.join(unknown)} cannot lose channels: the prunable convolutions are "
                           f"{', '.join(prunable) or '(none)'}")


def _graph(model) -> _Graph:
    if isinstance(model, keras.Sequential) or not getattr(model, "_is_graph_network", False):
        raise EdgeCNNError(f"channel pruning rebuilds functional tf_keras models; {model.name!r} is not one")
    config = model.get_config()
    inbound, consumers = {}, {entry["name"]: [] for entry in config["layers"]}
    for entry in config["layers"]:
        layer = model.get_layer(entry["name"])
        if isinstance(layer, keras.Model) or len(entry["inbound_nodes"]) > 1:
            raise EdgeCNNError(
                f"channel pruning needs a flat model whose layers are each called once; {layer.name!r} is "
                f"{'a nested model' if isinstance(layer, keras.Model) else 'called more than once'}"
            )
        inbound[layer.name] = [node[0] for call in entry["inbound_nodes"] for node in call]
        for source in inbound[layer.name]:
            consumers[source].append(layer.name)
    layers = {entry["name"]: model.get_layer(entry["name"]) for entry in config["layers"]}
    return _Graph(layers, inbound, consumers, {output[0] for output in config["output_layers"]})


def _role(layer) -> str:
    """'absorbs' (a convolution or Dense: takes any input channels), 'follows' (each output channel is
    one input channel's) or 'blocks' (anything else: combines channels, or unknown here)."""
    kind = type(layer).__name__
    if kind == "Dense" or (kind == "Conv2D" and layer.groups == 1):
        return "absorbs"
    channel_axis = len(layer.output_shape) - 1 if kind in ("BatchNormalization", "Concatenate") else None
    follows = (
        kind in CHANNELWISE
        or (kind == "DepthwiseConv2D" and layer.depth_multiplier == 1)
        or (kind == "BatchNormalization" and list(layer.axis) == [channel_axis])
        or (kind == "Concatenate" and layer.axis in (-1, channel_axis))
        or (kind == "Activation" and layer.get_config()["activation"] != "softmax")
    )
    return "follows" if follows else "blocks"


def _chains(graph: _Graph) -> dict[str, list[str]]:
    chains = {}
    for name, layer in graph.layers.items():
        if _role(layer) == "absorbs" and type(layer).__name__ == "Conv2D" and name not in graph.outputs:
            chain = _channel_chain(graph, name)
            if chain is not None:
                chains[name] = chain
    return chains


def _channel_chain(graph: _Graph, conv: str) -> list[str] | None:
    """The layers ``conv``'s channels pass through until absorbed, or None when one blocks or is an output."""
    chain, frontier = [], list(graph.consumers[conv])
    while frontier:
        name = frontier.pop(0)
        role = _role(graph.layers[name])
        if role == "absorbs":
            continue
        if role == "blocks" or name in graph.outputs:
            return None
        if name not in chain:
            chain.append(name)
            frontier.extend(graph.consumers[name])
    return chain


def _strongest_channels(graph: _Graph, conv: str, fraction: float) -> np.ndarray:
    """The sorted indices of the channels ``conv`` keeps: largest |gamma| of the BN right after it, else L1."""
    layer = graph.layers[conv]
    followers = [graph.layers[name] for name in graph.consumers[conv]]
    bn = followers[0] if len(followers) == 1 else None
    if type(bn).__name__ == "BatchNormalization" and bn.scale:
        scores = np.abs(bn.gamma.numpy())
    else:
        scores = np.abs(layer.kernel.numpy()).sum(axis=(0, 1, 2))
    return np.sort(np.argsort(-scores, kind="stable")[: kept_count(len(scores), fraction)])


def _take(values: np.ndarray, indices: np.ndarray | None, axis: int) -> np.ndarray:
    return values if indices is None else np.take(values, indices, axis=axis)


def _thinned(layer, incoming: list[np.ndarray | None], chosen: np.ndarray | None):
    """(original indices of the output channels the layer keeps or None for all, its weights thinned to
    its kept input channels ``incoming`` and output channels ``chosen``)."""
    kind, values = type(layer).__name__, layer.get_weights()
    source = incoming[0] if incoming else None
    if kind == "Conv2D":
        return chosen, [_take(_take(values[0], source, 2), chosen, 3), *(_take(b, chosen, 0) for b in values[1:])]
    if kind == "Dense":
        return None, [_take(values[0], source, 0), *values[1:]]
    if kind in ("DepthwiseConv2D", "BatchNormalization"):
        return source, [_take(w, source, 2 if w.ndim == 4 else 0) for w in values]
    if kind == "Flatten" and source is not None:
        channels, positions = layer.input_shape[-1], math.prod(layer.input_shape[1:-1])
        return (np.arange(positions)[:, None] * channels + source[None, :]).ravel(), values
    if kind == "Concatenate" and any(k is not None for k in incoming):
        widths = [shape[-1] for shape in layer.input_shape]
        offsets = np.cumsum([0, *widths[:-1]])
        parts = [offset + (np.arange(width) if k is None else k) for k, width, offset in zip(incoming, widths, offsets)]
        return np.concatenate(parts), values
    return source, values
