"""Export benchmark: fp32 vs int8 size, accuracy and latency: the study ``edge_cnn.studies.bench_export``.

Kept as a script for old command lines; ``edgecnn study export`` runs the same ``main``.
"""

import sys

from edge_cnn.studies.bench_export import main

if __name__ == "__main__":
    sys.exit(main())
