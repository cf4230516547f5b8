"""Pedestrian windows cross-validated by source photo, HOG + linear SVM vs the CNN: the study
``edge_cnn.studies.pedestrian_cv``.

Kept as a script for old command lines; ``edgecnn study cv`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.pedestrian_cv import main

if __name__ == "__main__":
    sys.exit(main())
