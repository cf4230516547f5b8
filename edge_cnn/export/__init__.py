"""Export stage: Keras -> TFLite / ONNX / SavedModel (fp32, fp16, dynamic, int8; QAT, pruning,
clustering), each artifact checked against Keras, described in ``manifest.json``."""

from edge_cnn.export.exporter import ExportResult, export

__all__ = ["ExportResult", "export"]
