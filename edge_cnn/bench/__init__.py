"""Latency benchmarks: ONNX Runtime (CPU/CUDA/TensorRT), LiteRT and the Keras baseline, side by side.

``run(targets, ...)`` returns a ``BenchReport`` of ``BenchResult`` rows; ``edgecnn bench`` formats it.
The timers and the machine description it uses live below every stage (``edge_cnn.timing``,
``edge_cnn.machine``), so export's parity check can time a model without importing bench.
"""

from edge_cnn.bench.runner import BenchReport, BenchResult, run

__all__ = ["BenchReport", "BenchResult", "run"]
