"""fp32 ONNX -> int8 ONNX with onnxruntime's ``quant_pre_process`` + ``quantize_static``.

Calibrated on the same preprocessed training images as the TFLite int8 model. Defaults:
QDQ (the form TensorRT and the CUDA provider consume), per-channel s8 weights, u8
activations with ``reduce_range`` (7-bit weights): on an AVX2 CPU without VNNI this was the
fastest variant within 1 pp in ``edgecnn study export`` (u8 activations ~30% faster than
s8; without reduce_range u8s8 lost 1.2 pp, the known AVX2 u8s8 saturation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_cnn.errors import EdgeCNNError

ONNX_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
CALIB_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
QUANT_TYPES = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}
DEPTHWISE = "DepthwiseConv"  # --onnx-float-ops name of a Conv with group > 1 (ONNX has no op type of its own for it)
CALIB_BATCH = 16


@dataclasses.dataclass(frozen=True)
class OnnxQuantOptions:
    format: str = "qdq"
    calib_method: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = True
    activation_type: str = "u8"
    weight_type: str = "s8"
    float_ops: tuple[str, ...] = ()  # ONNX op types (or DEPTHWISE) left in float: a mixed-precision int8 graph

    def check(self) -> "OnnxQuantOptions":
        for op in self.float_ops:
            if not op.isidentifier():
                raise EdgeCNNError(f"--onnx-float-ops entry {op!r} is not an ONNX op type: use names like Conv, "
                                   f"MaxPool, {DEPTHWISE}")
        for value, allowed, what in (
            (self.format, ONNX_FORMATS, "ONNX quantization format"),
            (self.calib_method, CALIB_METHODS, "calibration method"),
            (self.activation_type, QUANT_TYPES, "activation type"),
            (self.weight_type, QUANT_TYPES, "weight type"),
        ):
            if value not in allowed:
                raise EdgeCNNError(f"{what} {value!r} is unknown: use one of {', '.join(allowed)}")
        return self


class ArrayReader(CalibrationDataReader):
    """Feeds calibration images in small batches under the graph's input name."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name = input_name
        self.images = images
        self.rewind()

    def rewind(self) -> None:
        self._batches = iter(range(0, len(self.images), CALIB_BATCH))

    def get_next(self):
        start = next(self._batches, None)
        if start is None:
            return None
        return {self.input_name: self.images[start : start + CALIB_BATCH].astype(np.float32)}


class PerTensorFallbackFilter(logging.Filter):
    """Drops onnxruntime's root-logger warning "Axis 1 is out-of-range for weight ... with rank 1".

    onnxruntime logs it for a rank-1 weight (a BatchNormalization after MobileFaceNet's global depthwise
    convolution, left as Mul/Add) that per-channel quantization cannot split, and then quantizes that
    weight per tensor, which is the right thing for a vector: a note for onnxruntime's developers, not
    a problem the user could act on, so it stays off a quiet export.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def per_tensor_fallback_quiet():
    """``PerTensorFallbackFilter`` on the root logger inside the block."""
    quiet = PerTensorFallbackFilter()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def float_nodes(model: onnx.ModelProto, float_ops: tuple[str, ...]) -> list[str]:
    """Names of the nodes a mixed-precision export leaves in float: those of the op types in ``float_ops``
    (``DepthwiseConv``: a Conv with group > 1). Each op type must match a node, so that a typo or an op the
    graph does not have is refused instead of silently quantizing everything."""
    def kind(node: onnx.NodeProto) -> str:
        group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        return DEPTHWISE if node.op_type == "Conv" and group > 1 else node.op_type

    kinds = {node.name: kind(node) for node in model.graph.node}
    missing = [op for op in float_ops if op not in kinds.values()]
    if missing:
        present = ", ".join(sorted(set(kinds.values())))
        raise EdgeCNNError(f"--onnx-float-ops {', '.join(missing)}: no such node in this model's ONNX graph "
                           f"(it has {present})")
    return [name for name, op in kinds.items() if op in float_ops]


def requantized_float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the compute nodes of a QDQ int8 graph that run in float between int8 layers: a node whose
    output reaches another compute node without a QuantizeLinear, while a QuantizeLinear lies further on.

    Why: each such node makes onnxruntime dequantize, compute in float and quantize again in the middle of
    the network. tf2onnx writes a PReLU as Relu(x) - alpha * Relu(-x), and the quantizer leaves its Neg in
    float: MobileFaceNet's 33 PReLUs then ran its int8 graph 1.57x slower than fp32 on an AVX2 CPU, where
    graphs without such nodes of 41M MACs and more ran int8 faster (``runtime.artifacts``). The input's
    layout Transpose (fed to a QuantizeLinear) and the float head after the last QuantizeLinear (softmax,
    L2 normalisation) do not count."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    conversions = ("QuantizeLinear", "DequantizeLinear")
    requantized: dict[str, bool] = {}  # node name -> a QuantizeLinear lies on some path after it

    def reaches_quantize(node: onnx.NodeProto) -> bool:
        key = node.name or id(node)
        if key not in requantized:
            requantized[key] = False  # a cycle (none in ONNX) cannot recurse forever
            requantized[key] = any(after.op_type == "QuantizeLinear" or reaches_quantize(after)
                                   for output in node.output for after in consumers.get(output, []))
        return requantized[key]

    return [node.name for node in graph.node if node.op_type not in conversions
            and any(after.op_type not in conversions for output in node.output for after in consumers.get(output, []))
            and reaches_quantize(node)]


def quantize_onnx(fp32: onnx.ModelProto, dest: Path, calibration: np.ndarray, options: OnnxQuantOptions) -> None:
    """Write the int8 model to ``dest`` (a temporary working folder holds the intermediate files).

    With ``options.float_ops`` the nodes of those types stay float32 between a DequantizeLinear and a
    QuantizeLinear (a mixed-precision graph): int8 where it pays on the device, float where it does not."""
    options.check()
    if calibration is None or len(calibration) == 0:
        raise ValueError("ONNX int8 needs calibration images")
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-quant-") as work:
        raw = Path(work) / "fp32.onnx"
        prepared = Path(work) / "fp32.pre.onnx"
        onnx.save(fp32, raw)
        quant_pre_process(str(raw), str(prepared))
        excluded = float_nodes(onnx.load(str(prepared)), options.float_ops) if options.float_ops else []
        with per_tensor_fallback_quiet():
            quantize_static(
                str(prepared),
                str(dest),
                ArrayReader(fp32.graph.input[0].name, calibration),
                quant_format=ONNX_FORMATS[options.format],
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=QUANT_TYPES[options.activation_type],
                weight_type=QUANT_TYPES[options.weight_type],
                calibrate_method=CALIB_METHODS[options.calib_method],
                nodes_to_exclude=excluded,
            )
