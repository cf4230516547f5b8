"""Latency benchmarks: ONNX Runtime (CPU/CUDA/TensorRT), LiteRT and the Keras baseline, side by side.

``run(targets, ...)`` returns a ``BenchReport`` of ``BenchResult`` rows; ``edgecnn bench`` formats it.
"""

from edge_cnn.bench.runner import BenchReport, BenchResult, run
from edge_cnn.bench.timing import LatencyStats, summarize, time_calls

__all__ = ["BenchReport", "BenchResult", "LatencyStats", "run", "summarize", "time_calls"]
