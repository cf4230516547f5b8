"""Keras -> ONNX with tf2onnx: explicit input signature (dynamic batch), checked graph.

tf2onnx logs the TensorFlow ops it cannot convert and leaves them in the graph as
unknown nodes; such a graph is refused here (``ConversionError`` naming the ops)
instead of being shipped half converted.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import onnx
import tf2onnx

from edge_cnn.keras import tf

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


class ConversionError(RuntimeError):
    """A converter produced no usable artifact (reported as FAILED, the other formats go on)."""


def convert_onnx(model, opset: int = 17) -> onnx.ModelProto:
    """tf_keras model -> checked ONNX ModelProto whose input keeps the Keras input name."""
    _plain_grouped_convolutions(model)
    input_shape = tuple(model.inputs[0].shape[1:])
    signature = (tf.TensorSpec((None, *input_shape), tf.float32, name=model.input_names[0]),)
    with _captured_errors("tf2onnx") as messages:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    unconverted = unconverted_ops(proto)
    if unconverted or any("not supported" in m or "Unsupported ops" in m for m in messages):
        shown = ", ".join(unconverted) or "; ".join(messages)[:300]
        raise ConversionError(f"tf2onnx could not convert these TensorFlow ops: {shown} (opset {opset})")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the ONNX graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return proto


def _plain_grouped_convolutions(model) -> None:
    """tf_keras runs a grouped Conv2D through an XLA-compiled function that tf2onnx leaves as an
    unconvertible PartitionedCall (onnx/tensorflow-onnx#2099); the plain op computes the same."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D) and getattr(layer, "groups", 1) > 1:
            layer._jit_compiled_convolution_op = layer.convolution_op


def unconverted_ops(proto: onnx.ModelProto) -> list[str]:
    """Op types in the graph that no ONNX opset defines (tf2onnx's leftovers), sorted."""
    leftovers = set()
    for node in proto.graph.node:
        if node.domain not in STANDARD_DOMAINS or not onnx.defs.has(node.op_type, node.domain):
            leftovers.add(f"{node.domain + '.' if node.domain else ''}{node.op_type}")
    return sorted(leftovers)


@contextlib.contextmanager
def _captured_errors(logger_name: str) -> Iterator[list[str]]:
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def write_onnx(context, job, path) -> None:
    """The format table's writer. fp32: the converted graph. Post-training int8: onnxruntime's QDQ
    quantizer over it. QAT int8: the graph already carries its QDQ nodes, but tf2onnx folded the
    fake-quant weights back to float32, so they are stored as int8 again (``onnx_qdq``)."""
    if job.precision == "int8" and not context.qat:
        from edge_cnn.export.onnx_quant import quantize_onnx

        quantize_onnx(context.onnx_graph(job), path, context.calibration, context.onnx_options)
    elif job.precision == "int8":
        from edge_cnn.export.onnx_qdq import store_weights_int8

        onnx.save(store_weights_int8(context.onnx_graph(job)), str(path))
    else:
        onnx.save(context.onnx_graph(job), str(path))
