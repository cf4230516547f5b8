"""Enrollment of unseen people (issue 7's 30/10 protocol): the study ``edge_cnn.studies.enrollment_protocol``.

Kept as a script for old command lines; ``edgecnn study enrollment`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.enrollment_protocol import main

if __name__ == "__main__":
    sys.exit(main())
