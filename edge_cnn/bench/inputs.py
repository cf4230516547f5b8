"""Benchmark inputs that look like real ones: the model's value range and dtype, or real images.

Random values are drawn in the range a pixel maps to (``PreprocessSpec.value_range()``,
[0, 1] without a manifest); int8/uint8 inputs are quantized float values, as a real
client would feed them. Several buffers are made so that timing rotates among them
and caches are not flattered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.preprocess import PreprocessSpec, find_images
from edge_cnn.numerics import quantize as runtime_quantize

BUFFERS = 8
MAX_BUFFER_BYTES = 512 * 2**20  # fewer buffers for huge batches rather than gigabytes of inputs


def parse_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """'32x32x3' or '32,32,3' (one input without its batch dimension) -> (32, 32, 3)."""
    if not isinstance(text, str):
        return tuple(int(d) for d in text)
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x") if d.strip())
    except ValueError:
        raise EdgeCNNError(f"--input-shape {text!r} is not like 32x32x3 (one input, without the batch)") from None
    if not dims or min(dims) < 1:
        raise EdgeCNNError(f"--input-shape {text!r} needs positive sizes, e.g. 32x32x3")
    return dims


def _shown(shape: Sequence[int]) -> str:
    return "x".join("N" if i == 0 and d < 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(shape))


def resolve_shape(
    model_shape: Sequence[int],
    batch: int,
    *,
    input_shape: Sequence[int] | None = None,
    spec: PreprocessSpec | None = None,
    model: str = "the model",
    fixed_batch: bool = False,
) -> tuple[int, ...]:
    """The concrete input shape for one batch: dynamic dimensions from ``input_shape`` (or the
    manifest's preprocessing), which must agree with every static dimension of the model."""
    model_shape = tuple(int(d) if d is not None else -1 for d in model_shape)
    if fixed_batch and model_shape[0] > 0 and model_shape[0] != batch:
        raise EdgeCNNError(
            f"{model} takes a fixed batch of {model_shape[0]} (input {_shown(model_shape)}): "
            f"use --batch {model_shape[0]} or re-export it with a dynamic batch"
        )
    rest = model_shape[1:]
    if input_shape is not None:
        given = tuple(input_shape)
        if len(given) != len(rest) or any(m > 0 and m != g for m, g in zip(rest, given)):
            raise EdgeCNNError(
                f"--input-shape {'x'.join(map(str, given))} does not fit {model}, which takes "
                f"{_shown(model_shape)}: give the dimensions after the batch, e.g. {_example(rest)}"
            )
        return (batch, *given)
    if any(d < 0 for d in rest):
        if spec is not None and len(spec.input_shape) == len(rest):
            if all(m < 0 or m == s for m, s in zip(rest, spec.input_shape)):
                return (batch, *spec.input_shape)
        raise EdgeCNNError(
            f"{model} has dynamic dimensions ({_shown(model_shape)}): pass --input-shape, e.g. {_example(rest)}"
        )
    return (batch, *rest)


def _example(rest: Sequence[int]) -> str:
    return "x".join(str(d) if d > 0 else "224" for d in rest)


def quantize(values: np.ndarray, quantization: tuple[float, int], dtype: str) -> np.ndarray:
    """Float values -> int8/uint8 exactly as the runtime feeds them to the model."""
    scale, zero_point = quantization
    if not scale:
        raise EdgeCNNError(f"{dtype} input has no quantization scale: re-export the model")
    return runtime_quantize(values, scale, zero_point, dtype)


def _cast(values: np.ndarray, dtype: str, quantization: tuple[float, int] | None) -> np.ndarray:
    if dtype in ("int8", "uint8"):
        if quantization is None:
            raise EdgeCNNError(f"the model takes {dtype} input without quantization parameters: pass its export folder")
        return quantize(values, quantization, dtype)
    return np.ascontiguousarray(values.astype(dtype))


def buffer_count(shape: Sequence[int], dtype: str, wanted: int = BUFFERS) -> int:
    one = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return max(1, min(wanted, MAX_BUFFER_BYTES // max(one, 1)))


def random_inputs(
    shape: Sequence[int],
    dtype: str,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    quantization: tuple[float, int] | None = None,
    count: int = BUFFERS,
    seed: int = 0,
) -> list[np.ndarray]:
    """``count`` batches of uniform values in ``value_range``, in the model's dtype."""
    rng = np.random.default_rng(seed)
    low, high = value_range
    return [
        _cast(rng.uniform(low, high, size=tuple(shape)).astype(np.float32), dtype, quantization)
        for _ in range(buffer_count(shape, dtype, count))
    ]


def image_files(folder: str | Path) -> list[Path]:
    return find_images(folder, "--data")


def image_inputs(
    folder: str | Path,
    spec: PreprocessSpec,
    shape: Sequence[int],
    dtype: str,
    *,
    quantization: tuple[float, int] | None = None,
    count: int = BUFFERS,
) -> list[np.ndarray]:
    """Batches of real images through the manifest's preprocessing (cycling if there are few)."""
    files = image_files(folder)
    batch = int(shape[0])
    count = buffer_count(shape, dtype, count)
    needed = min(batch * count, max(len(files), batch))
    pixels = spec([files[i % len(files)] for i in range(needed)])
    if tuple(pixels.shape[1:]) != tuple(shape[1:]):
        raise EdgeCNNError(
            f"images from {folder} preprocess to {'x'.join(map(str, pixels.shape[1:]))} but the model takes "
            f"{'x'.join(map(str, shape[1:]))}: the manifest's preprocessing does not match this model"
        )
    order = np.arange(batch * count) % len(pixels)
    return [_cast(pixels[order[i * batch : (i + 1) * batch]], dtype, quantization) for i in range(count)]
