"""Training throughput of edge_cnn.train against a bare model.fit: the study ``edge_cnn.studies.bench_train``.

Kept as a script for old command lines; ``edgecnn study train`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.bench_train import main

if __name__ == "__main__":
    sys.exit(main())
