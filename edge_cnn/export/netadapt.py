"""Latency-guided channel pruning: NetAdapt (Yang et al., ECCV 2018, "NetAdapt: Platform-Aware Neural
Network Adaptation for Mobile Applications").

Why: ``--prune-channels`` removes the same fraction of every convolution, but MACs and parameters
are poor proxies of latency on a given CPU (a layer's cost also depends on its resolution, on how its
channel count fits the kernels' vector width, on memory traffic). NetAdapt spends the accuracy where
the measured latency comes off: it shrinks one layer at a time, each time the layer whose pruning
hurts validation accuracy least, until a target latency is met.

The algorithm as implemented:

1. measure the current model's latency with ``latency_of`` (the exporter passes ``tflite_latency_ms``:
   the fp32 TFLite model on this CPU, 1 thread, batch 1, the lowest of 3 medians of 50 calls; tests pass
   a deterministic cost);
2. while it is above the target: for each prunable convolution (``channels.prunable_convolutions``)
   with more than one channel left, a proposal removes ``max(1, floor(step * channels))`` of that
   layer's channels only, those of smallest BN |gamma| (``channels.prune_channels`` with a per-layer
   fraction); it is fine-tuned for ``short_epochs`` on the training images, its latency measured and
   its accuracy scored on the validation images;
3. the proposal with the best validation accuracy becomes the current model (ties: the one that
   saves most latency), and the loop goes on.

It stops when the target is met, or when no prunable convolution has a channel to spare: then the
facts say the target was not met and why. Every iteration removes at least one channel, so it ends,
even when a measured latency is noise: on a model that runs in microseconds a thinner proposal may time
no faster (it is still taken), and whether the target is met is decided by one median too.

Simplified from the paper, which sizes each proposal to save this iteration's latency reduction
(found in per-layer latency lookup tables) so that all proposals save about the same latency. A fixed
fraction of the layer's channels needs no tables and no search per layer, at a price: proposals save
different latencies and accuracy alone decides between them, so a layer that is cheap to prune is
preferred over one that saves more at a small accuracy loss. The paper's long fine-tune of the final
model is the exporter's (``--prune-epochs``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.channels import prunable_convolutions, prune_channels
from edge_cnn.export.optimize import _fine_tune
from edge_cnn.export.source import ends_in_softmax
from edge_cnn.export.tflite import convert_tflite
from edge_cnn.quiet import native_stderr_silenced
from edge_cnn.timing import time_calls
from edge_cnn.zoo import profile

DEFAULT_STEP = 0.125  # a proposal removes an eighth of its layer's channels (at least one)
DEFAULT_SHORT_EPOCHS = 1  # each proposal's fine-tune before it is scored
LATENCY_RUNS = 50
LATENCY_WARMUP = 20
LATENCY_REPEATS = 3  # the fastest of this many medians: noise (TensorFlow's threads still spinning after a
# fine-tune, another process) only ever adds time; one median of 30 calls read the pedestrian model at
# 0.235 ms right after training where interleaved rounds read 0.158 ms
NOTHING_TO_SPARE = "every prunable convolution is down to one channel"


@dataclasses.dataclass
class _Proposal:
    """The current model with one convolution thinner, fine-tuned briefly, measured and scored."""

    layer: str
    model: Any
    kept: int  # the layer's channels left
    latency_ms: float
    val_accuracy: float


def netadapt(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    target_ms: float,
    latency_of: Callable[[Any], float],
    *,
    step: float = DEFAULT_STEP,
    short_epochs: int = DEFAULT_SHORT_EPOCHS,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[Any, dict[str, Any]]:
    """Prune ``model``'s channels layer by layer until ``latency_of(model)`` (ms) is at most ``target_ms``
    (see the module docstring) -> (pruned model, facts: each iteration's layer, channels left, latency and
    validation accuracy; channels kept per convolution; parameters, MACs, latency and validation accuracy
    before/after; the target and whether it was met). The source model is left as it was; it is returned
    itself when it already meets the target. ``log`` gets one line per iteration (the proposals' fine-tunes
    are silent: there are as many per iteration as prunable convolutions)."""
    if not float(target_ms) > 0:
        raise EdgeCNNError(f"--target-latency {target_ms} must be a latency above 0 milliseconds (e.g. 5)")
    if not 0.0 < float(step) < 1.0:
        raise EdgeCNNError(f"NetAdapt step {step} must be a fraction of a layer's channels between 0 and 1")
    if len(x_val) == 0:
        raise EdgeCNNError("NetAdapt scores its proposals on labelled validation images and got none")
    prunable = list(prunable_convolutions(model))
    probabilities = ends_in_softmax(model)
    current, latency, accuracy = model, float(latency_of(model)), _accuracy(model, x_val, y_val)
    start_latency, start_accuracy = latency, accuracy
    log(f"NetAdapt from {latency:.3f} ms (val accuracy {accuracy:.3f}) to {float(target_ms):.3f} ms")
    iterations = []
    while latency > target_ms:
        shrinkable = [name for name in prunable if current.get_layer(name).filters > 1]
        if not shrinkable:
            break
        proposals = [
            _propose(current, name, step, (x_train, y_train, x_val, y_val), short_epochs, probabilities, latency_of)
            for name in shrinkable
        ]
        best = max(proposals, key=lambda proposal: (proposal.val_accuracy, -proposal.latency_ms))
        current, latency, accuracy = best.model, best.latency_ms, best.val_accuracy
        iterations.append({"layer": best.layer, "kept": best.kept, "latency_ms": latency, "val_accuracy": accuracy})
        log(f"NetAdapt {len(iterations)}: {best.layer} -> {best.kept} channels, {latency:.3f} ms, "
            f"val accuracy {accuracy:.3f}")
    met = latency <= target_ms
    if not met:
        log(f"NetAdapt stopped at {latency:.3f} ms, above the target: {NOTHING_TO_SPARE}")
    before, after = profile(model), profile(current)
    return current, {
        "method": "netadapt",
        "target_ms": float(target_ms),
        "met": bool(met),
        "stopped": "target met" if met else NOTHING_TO_SPARE,
        "step": float(step),
        "short_epochs": int(short_epochs),
        "iterations": iterations,
        "latency_before_ms": start_latency,
        "latency_after_ms": latency,
        "val_accuracy_before": start_accuracy,
        "val_accuracy_after": accuracy,
        "params_before": before["params"],
        "params_after": after["params"],
        "macs_before": before["macs"],
        "macs_after": after["macs"],
        "channels_kept": {
            name: {"kept": int(current.get_layer(name).filters), "of": int(model.get_layer(name).filters)}
            for name in prunable
        },
    }


def tflite_latency_ms(model, runs: int = LATENCY_RUNS) -> float:
    """Milliseconds of one batch-1 call of ``model`` converted to fp32 TFLite, on this CPU at 1 thread (the
    deployment's own runtime, which is what the target is about): the lowest of ``LATENCY_REPEATS`` medians
    of ``runs`` calls."""
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():  # the converter's MLIR chatter
        flatbuffer = convert_tflite(model, "fp32")
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    entry = interpreter.get_input_details()[0]
    image = np.random.default_rng(0).uniform(0.0, 1.0, (1, *entry["shape"][1:])).astype(np.float32)

    def call(batch: np.ndarray) -> None:
        interpreter.set_tensor(entry["index"], batch)
        interpreter.invoke()

    return min(time_calls(call, [image], warmup=LATENCY_WARMUP if repeat == 0 else 0, runs=runs).p50_ms
               for repeat in range(LATENCY_REPEATS))


def _propose(model, layer: str, step: float, data, short_epochs: int, probabilities: bool, latency_of) -> _Proposal:
    x_train, y_train, x_val, y_val = data
    channels = model.get_layer(layer).filters
    removed = max(1, math.floor(step * channels))
    thinner, _ = prune_channels(model, {layer: removed / channels})
    if short_epochs > 0:
        _fine_tune(thinner, x_train, y_train, short_epochs, 0, probabilities)
    return _Proposal(layer, thinner, channels - removed, float(latency_of(thinner)), _accuracy(thinner, x_val, y_val))


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a classifier (the only models channel pruning fine-tunes)."""
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == np.asarray(y)))
