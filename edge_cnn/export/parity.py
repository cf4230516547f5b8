"""Load an artifact back with its own runtime and compare it with the Keras model on held-out images.

ONNX and TFLite go through ``edge_cnn.backends.open_backend`` (onnxruntime, LiteRT),
SavedModel through TensorFlow. int8 inputs are quantized with the tensor's own
scale/zero-point and int8 outputs dequantized, exactly as the embedded runtime does.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from edge_cnn.backends import TensorInfo, match_outputs, open_backend
from edge_cnn.formats import get_format
from edge_cnn.numerics import dequantize as runtime_dequantize
from edge_cnn.numerics import l2_normalize
from edge_cnn.numerics import quantize as runtime_quantize
from edge_cnn.numerics import softmax
from edge_cnn.tasks import get_task
from edge_cnn.timing import time_calls

FLOAT_TOLERANCE = 1e-4  # max abs difference of probabilities for fp32 artifacts
MAX_DROP_PP = 1.0  # accuracy drop (percentage points) allowed for fp16 / dynamic / int8
MIN_AGREEMENT = 99.0  # without labels: top-1 agreement (%) allowed for fp16 / dynamic / int8
LATENCY_WARMUP = 5
LATENCY_RUNS = 20
BATCH = 32
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


class KerasOutput(NamedTuple):
    name: str
    shape: list[int]


@dataclasses.dataclass
class LoadedArtifact:
    """A runnable artifact: ``raw`` takes the model's own input dtype and returns the file's outputs;
    ``order`` gives, for each Keras output, its position among them (TFLite reorders outputs)."""

    raw: Callable[[np.ndarray], list[np.ndarray]]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    order: list[int] = dataclasses.field(default_factory=lambda: [0])
    logits: bool = False  # the class output is logits: compared as probabilities, as the runtime serves them

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return quantize(batch, self.inputs[0])

    def predict_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Float outputs in the Keras model's output order, dequantized."""
        chunks = [self.raw(self.prepare(batch[i : i + BATCH])) for i in range(0, len(batch), BATCH)]
        outputs = [
            np.concatenate([dequantize(chunk[position], self.outputs[position]) for chunk in chunks]).astype(np.float32)
            for position in self.order
        ]
        if self.logits:
            outputs[0] = softmax(outputs[0])
        return outputs

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The first Keras output (the class probabilities or logits)."""
        return self.predict_all(batch)[0]


def quantize(batch: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float model values -> the tensor's dtype, with the runtime's int8/uint8 quantization."""
    if info.dtype not in INT_RANGES:
        return batch.astype(info.dtype)
    return runtime_quantize(batch, *info.quantization, info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.dtype not in INT_RANGES:
        return np.asarray(values, np.float32)
    return runtime_dequantize(values, *info.quantization)


def load_artifact(path: Path, format: str, keras_outputs: Sequence[KerasOutput] = (), logits: bool = False
                  ) -> LoadedArtifact:
    """Open ``path`` with its runtime; ``keras_outputs`` (name, shape) locate the Keras outputs among the
    file's outputs with the runtime's own matcher (by name, else by shape, else by position); ``logits``:
    the first of them is logits, turned into probabilities before any comparison."""
    if get_format(format).runtime == "tensorflow":
        raw, inputs, outputs = _load_saved_model(path)
    else:
        backend = open_backend(path, backend=format, threads=1)
        raw, inputs, outputs = backend.run, backend.inputs, backend.outputs
    order = match_outputs(keras_outputs, outputs, path) if keras_outputs else [0]
    return LoadedArtifact(raw=raw, inputs=inputs, outputs=outputs, order=order, logits=logits)


def resolve_same_shapes(
    artifact: LoadedArtifact, keras_names: Sequence[str], x: np.ndarray, references: Sequence[np.ndarray]
) -> LoadedArtifact:
    """When the file's names are not the Keras names and several outputs share a shape (TFLite with as
    many classes as embedding values), neither name nor shape tells them apart: take the order whose
    outputs are closest to Keras on the parity images (relative error)."""
    names = {info.name for info in artifact.outputs}
    if len(references) < 2 or all(name in names for name in keras_names):
        return artifact
    shapes = [tuple(artifact.outputs[i].shape) for i in artifact.order]
    if len(set(shapes)) == len(shapes):
        return artifact
    sample = artifact.prepare(x[:BATCH])
    raw = artifact.raw(sample)
    values = [dequantize(raw[i], artifact.outputs[i]) for i in range(len(raw))]

    def error(order) -> float:
        return sum(
            float(np.mean(np.abs(values[i] - ref[: len(sample)])) / (np.mean(np.abs(ref[: len(sample)])) + 1e-12))
            for i, ref in zip(order, references)
        )

    fitting = [
        order
        for order in itertools.permutations(range(len(values)), len(references))
        if all(values[i].shape[1:] == ref.shape[1:] for i, ref in zip(order, references))
    ]
    return dataclasses.replace(artifact, order=list(min(fitting, key=error)))


def keras_outputs(model) -> list[KerasOutput]:
    """(name, shape with -1 for the batch) of each output of a Keras model, for ``load_artifact``."""
    return [
        KerasOutput(name, [-1 if d is None else int(d) for d in tensor.shape])
        for name, tensor in zip(model.output_names, model.outputs)
    ]


def _load_saved_model(path: Path):
    from edge_cnn.keras import tf

    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    ((input_name, spec),) = function.structured_input_signature[1].items()
    output_specs = list(function.structured_outputs.items())

    def run(batch: np.ndarray) -> list[np.ndarray]:
        results = function(**{input_name: tf.constant(batch)})
        return [results[name].numpy() for name, _ in output_specs]

    shape = lambda s: tuple(-1 if d is None else int(d) for d in s.shape)  # noqa: E731
    inputs = [TensorInfo(input_name, shape(spec), spec.dtype.name)]
    outputs = [TensorInfo(name, shape(out), out.dtype.name) for name, out in output_specs]
    return run, inputs, outputs


def compare(
    artifact: LoadedArtifact,
    x: np.ndarray,
    y: np.ndarray | None,
    reference: np.ndarray,
    reference_accuracy: float | None,
    precision: str,
    reference_embedding: np.ndarray | None = None,
    task: str | None = None,
) -> dict:
    """The task's figures against Keras' main output (classify: accuracy, top-1 agreement and max abs
    difference of the probabilities; detect: AP@0.5 on the test photos, box agreement and max abs
    difference of the map), plus a verdict (the drop of the task's score is bounded like accuracy's); with ``reference_embedding``, the largest cosine distance between artifact and Keras embeddings."""
    outputs = artifact.predict_all(x)
    facts = {"images": int(len(x)), **get_task(task).parity(outputs[0], reference, y)}
    if facts["accuracy"] is not None and reference_accuracy is not None:
        facts["accuracy_drop_pp"] = reference_accuracy - facts["accuracy"]
    if reference_embedding is not None:
        facts["embedding_max_cosine_distance"] = max_cosine_distance(outputs[1], reference_embedding)
    facts["status"], facts["note"] = verdict(facts, precision)
    facts["latency_p50_ms"] = quick_latency(artifact, x)
    return facts


def max_cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """max over rows of 1 - cos(a_i, b_i): 0 for identical directions (float artifacts)."""
    a, b = l2_normalize(a.reshape(len(a), -1)), l2_normalize(b.reshape(len(b), -1))
    return float(np.max(1.0 - np.sum(a * b, axis=1))) if len(a) else 0.0


def verdict(facts: dict, precision: str) -> tuple[str, str]:
    """fp32 must match within FLOAT_TOLERANCE; reduced precisions may lose at most MAX_DROP_PP."""
    if precision == "fp32":
        if facts["max_abs_diff"] > FLOAT_TOLERANCE:
            return "WARN", f"max abs diff {facts['max_abs_diff']:.2e} > {FLOAT_TOLERANCE:g}"
        return "OK", ""
    drop = facts.get("accuracy_drop_pp")
    if drop is not None:
        return ("WARN", f"accuracy drop {drop:.2f} pp > {MAX_DROP_PP:g} pp") if drop > MAX_DROP_PP else ("OK", "")
    if facts["agreement"] < MIN_AGREEMENT:
        return "WARN", f"top-1 agreement {facts['agreement']:.1f}% < {MIN_AGREEMENT:g}% (no labels)"
    return "OK", ""


def quick_latency(
    artifact: LoadedArtifact, x: np.ndarray, warmup: int = LATENCY_WARMUP, runs: int = LATENCY_RUNS
) -> float:
    """p50 of batch-1 calls in ms (the runtime's work only: inputs are quantized beforehand)."""
    samples = [artifact.prepare(x[i : i + 1]) for i in range(min(len(x), 8))]
    return time_calls(artifact.raw, samples, warmup=warmup, runs=runs).p50_ms
