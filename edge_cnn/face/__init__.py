"""Face identification by embeddings: enroll new people without retraining, identify by cosine.

Numpy only on top of the embedded runtime's ``Predictor.embed`` (no TensorFlow).
"""

from edge_cnn.face.gallery import Gallery, Identity, enroll, identify

__all__ = ["Gallery", "Identity", "enroll", "identify"]
