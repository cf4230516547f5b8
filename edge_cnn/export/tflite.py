"""Keras -> TFLite flatbuffer bytes with ``tf.lite.TFLiteConverter`` (fp32, fp16, dynamic range, int8).

Full-integer int8 is calibrated on real training images that went through the run's
``PreprocessSpec``; its input and output tensors are int8 unless ``float_io`` (the
manifest then carries their scale/zero-point). A QAT model already holds its ranges,
so it converts to int8 without a representative dataset.
"""

from __future__ import annotations

import numpy as np

from edge_cnn.keras import tf

from edge_cnn.formats import get_format

TFLITE_PRECISIONS = get_format("tflite").precisions


def convert_tflite(
    model,
    precision: str = "fp32",
    calibration: np.ndarray | None = None,
    float_io: bool = False,
    quantization_aware: bool = False,
) -> bytes:
    """Convert ``model``; ``calibration`` (float batch in the model's layout) is needed for int8 unless QAT."""
    if precision not in TFLITE_PRECISIONS:
        raise ValueError(f"TFLite precision {precision!r} is not one of {TFLITE_PRECISIONS}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if not quantization_aware:
            if calibration is None or len(calibration) == 0:
                raise ValueError("full-integer int8 needs calibration images")
            converter.representative_dataset = _representative(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def _representative(calibration: np.ndarray):
    def batches():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    return batches


def write_tflite(context, job, path) -> None:
    """The format table's writer: the job's Keras model (logits for post-training int8) as a flatbuffer."""
    model = context.converted_model(job)
    path.write_bytes(convert_tflite(model, job.precision, context.calibration, context.float_io, context.qat))
