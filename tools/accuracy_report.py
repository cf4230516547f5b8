"""Test accuracy of the shipped recipes, retrained: the study ``edge_cnn.studies.accuracy_report``.

Kept as a script for old command lines; ``edgecnn study accuracy`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.accuracy_report import main

if __name__ == "__main__":
    sys.exit(main())
