"""Default choice and hand-made files: the study ``edge_cnn.studies.deploy_choice``.

Kept as a script like the others; ``edgecnn study deploy`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.deploy_choice import main

if __name__ == "__main__":
    sys.exit(main())
