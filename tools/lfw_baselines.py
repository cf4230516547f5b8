"""LFW View 2: raw pixels, Eigenfaces, LBP (and an export, dlib): the study ``edge_cnn.studies.lfw_baselines``.

``edgecnn study faces_lfw`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.lfw_baselines import main

if __name__ == "__main__":
    sys.exit(main())
