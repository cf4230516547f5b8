"""The embedded runtime: run an exported model on a device with no TensorFlow.

Depends on numpy, Pillow, onnxruntime and ai-edge-litert only (plus edgecnn's pure-Python
``errors``, ``io``, ``preprocess`` and ``manifest``). Install on a device with::

    pip install --no-deps edgecnn && pip install numpy pillow onnxruntime ai-edge-litert click

    from edge_cnn.runtime import Predictor
    predictor = Predictor.load("runs/face/export")          # the artifact for this CPU; predictor.reason says why
    print(predictor.predict("img.png").to_dict())
"""

from edge_cnn.backends import PROVIDERS, OnnxBackend, TensorInfo, TFLiteBackend, open_backend
from edge_cnn.tasks.classify import Prediction
from edge_cnn.runtime.predictor import Predictor

__all__ = ["PROVIDERS", "OnnxBackend", "Prediction", "Predictor", "TFLiteBackend", "TensorInfo", "open_backend"]
