"""Load an artifact back with its own runtime and compare it with the Keras model on held-out images.

ONNX and TFLite go through ``edge_cnn.runtime.backends.open_backend`` (onnxruntime, LiteRT),
SavedModel through TensorFlow. int8 inputs are quantized with the tensor's own
scale/zero-point and int8 outputs dequantized, exactly as the embedded runtime does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from edge_cnn.bench.timing import time_calls
from edge_cnn.runtime.backends import TensorInfo, open_backend

FLOAT_TOLERANCE = 1e-4  # max abs difference of probabilities for fp32 artifacts
MAX_DROP_PP = 1.0  # accuracy drop (percentage points) allowed for fp16 / dynamic / int8
MIN_AGREEMENT = 99.0  # without labels: top-1 agreement (%) allowed for fp16 / dynamic / int8
LATENCY_WARMUP = 5
LATENCY_RUNS = 20
BATCH = 32
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


@dataclasses.dataclass
class LoadedArtifact:
    """A runnable artifact: ``raw`` takes the model's own input dtype, ``predict`` float model inputs."""

    raw: Callable[[np.ndarray], np.ndarray]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return quantize(batch, self.inputs[0])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        chunks = [
            dequantize(self.raw(self.prepare(batch[i : i + BATCH])), self.outputs[0])
            for i in range(0, len(batch), BATCH)
        ]
        return np.concatenate(chunks).astype(np.float32)


def quantize(batch: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float model values -> the tensor's int type: q = round(x / scale) + zero_point, clipped."""
    if info.dtype not in INT_RANGES:
        return batch.astype(info.dtype)
    scale, zero_point = info.quantization
    low, high = INT_RANGES[info.dtype]
    return np.clip(np.round(batch / scale) + zero_point, low, high).astype(info.dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.dtype not in INT_RANGES:
        return np.asarray(values, np.float32)
    scale, zero_point = info.quantization
    return (values.astype(np.float32) - zero_point) * np.float32(scale)


def load_artifact(path: Path, format: str) -> LoadedArtifact:
    if format == "saved_model":
        return _load_saved_model(path)
    backend = open_backend(path, backend=format, threads=1)
    return LoadedArtifact(raw=lambda batch: backend.run(batch)[0], inputs=backend.inputs, outputs=backend.outputs)


def _load_saved_model(path: Path) -> LoadedArtifact:
    from edge_cnn.keras import tf

    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    ((input_name, spec),) = function.structured_input_signature[1].items()
    ((output_name, out_spec),) = function.structured_outputs.items()

    def run(batch: np.ndarray) -> np.ndarray:
        return function(**{input_name: tf.constant(batch)})[output_name].numpy()

    shape = lambda s: tuple(-1 if d is None else int(d) for d in s.shape)  # noqa: E731
    return LoadedArtifact(
        raw=run,
        inputs=[TensorInfo(input_name, shape(spec), spec.dtype.name)],
        outputs=[TensorInfo(output_name, shape(out_spec), out_spec.dtype.name)],
    )


def compare(
    artifact: LoadedArtifact,
    x: np.ndarray,
    y: np.ndarray | None,
    reference: np.ndarray,
    reference_accuracy: float | None,
    precision: str,
) -> dict:
    """Accuracy, top-1 agreement and max abs difference against the Keras probabilities, plus a verdict."""
    probabilities = artifact.predict(x)
    agreement = 100.0 * float(np.mean(probabilities.argmax(1) == reference.argmax(1)))
    facts = {
        "images": int(len(x)),
        "accuracy": 100.0 * float(np.mean(probabilities.argmax(1) == y)) if y is not None else None,
        "agreement": agreement,
        "max_abs_diff": float(np.max(np.abs(probabilities - reference))),
    }
    if facts["accuracy"] is not None and reference_accuracy is not None:
        facts["accuracy_drop_pp"] = reference_accuracy - facts["accuracy"]
    facts["status"], facts["note"] = verdict(facts, precision)
    facts["latency_p50_ms"] = quick_latency(artifact, x)
    return facts


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
