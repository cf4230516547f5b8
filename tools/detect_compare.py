"""Pedestrians on whole photos: HOG+SVM vs the trained detector's exports: the study ``edge_cnn.studies.detect_compare``.

``edgecnn study detect`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.detect_compare import main

if __name__ == "__main__":
    sys.exit(main())
