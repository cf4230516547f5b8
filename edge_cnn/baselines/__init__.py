"""The classical methods the CNN targets replace, measured on the same images.

HOG + linear SVM (Dalal & Triggs 2005) for pedestrian windows, the Viola-Jones Haar
cascade for face vs non-face, Eigenfaces (Turk & Pentland 1991) for identities.
OpenCV is optional: ``pip install "opencv-python-headless<5"`` (the ``dev`` extra has it).
"""

from edge_cnn.baselines.eigenfaces import Eigenfaces
from edge_cnn.baselines.metrics import roc_auc
from edge_cnn.baselines.opencv import HaarFaceDetector, HogPeopleDetector, HogPeopleScorer

__all__ = ["Eigenfaces", "HaarFaceDetector", "HogPeopleDetector", "HogPeopleScorer", "roc_auc"]
