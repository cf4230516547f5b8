"""A QAT ONNX graph's weights stored as int8 initializers feeding DequantizeLinear.

That is the form ONNX Runtime's quantizer writes: a quarter of the fp32 bytes, and the pattern its
QDQ fusions look for. tf2onnx does not produce it from tfmot: it constant-folds the weights'
fake-quant nodes (onnx/tensorflow-onnx#1972) and fuses the following BatchNormalization into Conv,
so a QAT graph arrives with float32 weights and no QDQ on them, while its activations keep their
QuantizeLinear/DequantizeLinear pairs. onnxruntime then re-quantizes such float weights on its own
per-tensor grid when it builds a session (its WeightBiasQuantization transformer): a second
quantization that drifts from the QAT Keras model. The folded weights still lie on a symmetric int8
grid (per output channel: the fake-quant scale times the BN factor), so they can be stored as int8
without changing what the graph computes beyond float rounding (at most GRID_TOLERANCE of a step;
3e-5 measured on resnet18). Two rewrites:

- a float initializer -> QuantizeLinear (constant scale and zero point) is quantized offline
  exactly as QuantizeLinear does (x / scale rounded half to even, plus the zero point, saturated to
  its dtype, per axis), leaving int8/uint8 initializer -> DequantizeLinear;
- a float weight initializer of Conv, ConvTranspose, MatMul or Gemm that lies on a symmetric int8
  grid (per tensor, else per output channel) becomes int8 initializer -> DequantizeLinear (zero
  point 0). Weights off the grid (layers QAT left float), biases and activations stay as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

GRID_TOLERANCE = 1e-3  # largest distance from the grid accepted, in quantization steps
INT8_LEVELS = 127  # symmetric narrow range [-127, 127], tfmot's weight quantizers
FOLDED_TYPES = (np.int8, np.uint8)  # QuantizeLinear outputs folded offline (not float8, int4 or blocked)
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}


def store_weights_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """A checked copy of ``model`` whose quantizable weights are int8 initializers."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    fold_constant_quantize(folded.graph)
    quantize_grid_weights(folded.graph)
    _drop_unused_initializers(folded.graph)
    onnx.checker.check_model(folded)
    return folded


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1) -> np.ndarray:
    """ONNX QuantizeLinear on numpy: saturate(round_half_even(x / scale) + zero_point), per axis when
    ``scale`` is 1-D, in float32 as onnxruntime computes it."""
    scale = np.asarray(scale, np.float32)
    zero_point = np.asarray(zero_point)
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    y = np.rint(x.astype(np.float32) / scale) + zero_point.astype(np.float32)
    return np.clip(y, info.min, info.max).astype(zero_point.dtype)


def fold_constant_quantize(graph: onnx.GraphProto) -> int:
    """Replace every QuantizeLinear of a constant float initializer by its quantized initializer."""
    initializers = _constant_initializers(graph)
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(name in initializers for name in node.input if name):
            continue
        x = numpy_helper.to_array(initializers[node.input[0]])
        attributes = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        has_zero_point = len(node.input) > 2 and node.input[2]
        zero_point = numpy_helper.to_array(initializers[node.input[2]]) if has_zero_point else np.uint8(0)
        if x.dtype.kind != "f" or zero_point.dtype not in FOLDED_TYPES or set(attributes) - {"axis"}:
            continue
        scale = numpy_helper.to_array(initializers[node.input[1]])
        axis = attributes.get("axis", 1)
        graph.initializer.append(numpy_helper.from_array(quantize_linear(x, scale, zero_point, axis), node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def quantize_grid_weights(graph: onnx.GraphProto) -> int:
    """Store each float weight on an int8 grid as int8 + DequantizeLinear, under its old name (so every
    consumer reads it unchanged); returns how many were stored."""
    initializers = _constant_initializers(graph)
    stored = set()
    for node in list(graph.node):
        position = WEIGHT_INPUT.get(node.op_type)
        if position is None or len(node.input) <= position:
            continue
        name = node.input[position]
        if name in stored or name not in initializers:
            continue
        weights = numpy_helper.to_array(initializers[name])
        if weights.dtype != np.float32 or weights.ndim < 2:
            continue
        found = int8_grid(weights, _output_axis(node, weights.ndim))
        if found is None:
            continue
        codes, scale, axis = found
        _replace_by_dequantize(graph, initializers[name], codes, scale, axis)
        stored.add(name)
    return len(stored)


def int8_grid(weights: np.ndarray, output_axis: int) -> tuple[np.ndarray, np.ndarray, int | None] | None:
    """(int8 codes, scale, axis) with ``codes * scale == weights`` within ``GRID_TOLERANCE`` steps: per
    tensor, else per output channel; None for weights that no symmetric int8 grid reproduces."""
    per_tensor = _channel_grids(weights.reshape(1, -1), search=False)
    if per_tensor is not None:
        codes, scale = per_tensor
        return codes.reshape(weights.shape), scale[0], None
    rows = np.moveaxis(weights, output_axis, 0)
    per_channel = _channel_grids(rows.reshape(rows.shape[0], -1))
    if per_channel is None:
        return None
    codes, scale = per_channel
    return np.moveaxis(codes.reshape(rows.shape), 0, output_axis), scale, output_axis


def _channel_grids(rows: np.ndarray, search: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row, the finest grid peak/k (k = 127, 126, ...) that holds every value of the row. k = 127 is
    tfmot's own grid (its peak is the range); a smaller k (``search``) is a per-tensor grid that a folded
    BN factor rescaled per channel."""
    peaks = np.abs(rows).max(axis=1).astype(np.float64)
    scales = np.where(peaks > 0, peaks / INT8_LEVELS, 1.0)
    codes = np.rint(rows / scales[:, None])
    off_grid = np.abs(rows / scales[:, None] - codes).max(axis=1) > GRID_TOLERANCE
    if off_grid.any() and not search:
        return None
    for row in np.flatnonzero(off_grid):
        found = _row_grid(rows[row].astype(np.float64), peaks[row])
        if found is None:
            return None
        codes[row], scales[row] = found
    return codes.astype(np.int8), scales.astype(np.float32)


def _row_grid(values: np.ndarray, peak: float) -> tuple[np.ndarray, float] | None:
    for levels in range(INT8_LEVELS - 1, 0, -1):
        scale = peak / levels
        codes = np.rint(values / scale)
        if np.abs(values / scale - codes).max() <= GRID_TOLERANCE:
            return codes, scale
    return None


def _output_axis(node: onnx.NodeProto, ndim: int) -> int:
    """The weight's output-channel axis: Conv OIHW -> 0, ConvTranspose IOHW -> 1, MatMul (K, N) -> 1,
    Gemm -> 0 when transB else 1."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if any(attr.name == "transB" and attr.i for attr in node.attribute) else 1
    return 1 if node.op_type == "ConvTranspose" else ndim - 1


def _replace_by_dequantize(graph, initializer, codes: np.ndarray, scale: np.ndarray, axis: int | None) -> None:
    name = initializer.name
    zero_point = np.zeros(np.shape(scale), np.int8)
    graph.initializer.remove(initializer)
    graph.initializer.extend(
        [
            numpy_helper.from_array(codes, f"{name}_quantized"),
            numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_scale"),
            numpy_helper.from_array(zero_point, f"{name}_zero_point"),
        ]
    )
    attributes = {} if axis is None else {"axis": axis}
    dequantize = helper.make_node(
        "DequantizeLinear",
        [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
        [name],
        name=f"{name}_DequantizeLinear",
        **attributes,
    )
    graph.node.insert(0, dequantize)  # reads initializers only: first is a valid topological place


def _constant_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers that are not also graph inputs (those a caller may override are no constants)."""
    inputs = {value.name for value in graph.input}
    return {init.name: init for init in graph.initializer if init.name not in inputs}


def _used_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name read by a node, including nodes of subgraphs (If/Loop bodies read outer names)."""
    used = {out.name for out in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for subgraph in [attr.g] * attr.HasField("g") + list(attr.graphs):
                used |= _used_names(subgraph)
    return used


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = _used_names(graph) | {value.name for value in graph.input}
    for initializer in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(initializer)
