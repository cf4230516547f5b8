"""The bench harness's p50 against a bare session.run loop: the study ``edge_cnn.studies.bench_overhead``.

Kept as a script for old command lines; ``edgecnn study overhead`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.bench_overhead import main

if __name__ == "__main__":
    sys.exit(main())
