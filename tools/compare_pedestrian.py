"""Pedestrian windows: HOG + linear SVM vs the exported CNN: the study ``edge_cnn.studies.compare_pedestrian``.

Kept as a script for old command lines; ``edgecnn study pedestrian`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.compare_pedestrian import main

if __name__ == "__main__":
    sys.exit(main())
