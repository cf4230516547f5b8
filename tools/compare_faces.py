"""Faces: Haar cascade and Eigenfaces vs the exported CNNs: the study ``edge_cnn.studies.compare_faces``.

Kept as a script for old command lines; ``edgecnn study faces`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.compare_faces import main

if __name__ == "__main__":
    sys.exit(main())
