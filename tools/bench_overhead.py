"""Is the harness honest? Its p50 against a bare ``session.run`` loop timed with ``time.perf_counter``.

Same ONNX model, same process, same kind of input buffers, same thread count, and a fresh
session for each block on both sides (the harness opens one per call of ``run``). Blocks
alternate, and which side goes first alternates too, so that a noisy neighbour on a
shared machine hits both alike; the ratio is given over all runs pooled and as the median
of the per-pair ratios (robust to load that drifts during the run).
Target: harness p50 within 3% of the bare loop's.

    python tools/bench_overhead.py                 # builds a small CNN (edge_cnn.keras + tf2onnx)
    python tools/bench_overhead.py model.onnx --blocks 10 --runs 300 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def build_model(folder: Path, size: int) -> Path:
    """A small Conv-BN-ReLU CNN (3 stages, 16-32-64 filters), converted with tf2onnx."""
    from edge_cnn.keras import keras, layers, tf
    import tf2onnx

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="image")
    h = inputs
    for filters in (16, 32, 64):
        h = layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
        h = layers.MaxPooling2D(2)(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(h))
    path = folder / "overhead_cnn.onnx"
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=str(path))
    return path


def bare_loop(session, buffers: list[np.ndarray], warmup: int, runs: int) -> list[float]:
    """The reference: nothing but ``session.run`` between two ``perf_counter`` readings."""
    names = [o.name for o in session.get_outputs()]
    feeds = [{session.get_inputs()[0].name: b} for b in buffers]
    for i in range(warmup):
        session.run(names, feeds[i % len(feeds)])
    durations = []
    for i in range(runs):
        feed = feeds[i % len(feeds)]
        start = time.perf_counter()
        session.run(names, feed)
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="an .onnx file (default: build a small CNN)")
    parser.add_argument("--size", type=int, default=64, help="input size of the built CNN")
    parser.add_argument("--blocks", type=int, default=20, help="alternating blocks of each kind")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edge_cnn.bench import inputs as bench_inputs
    from edge_cnn.bench import run
    from edge_cnn.bench.machine import machine_info
    from edge_cnn.runtime.backends import open_backend

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else build_model(Path(tmp), args.size)

        def harness_block() -> list[float]:
            result = run(path, threads=(args.threads,), warmup=args.warmup, runs=args.runs, progress=False).results[0]
            if result.status != "OK":
                raise SystemExit(f"harness failed: {result.error}")
            return result.durations_ms

        def bare_block() -> list[float]:
            session = open_backend(path, threads=args.threads).session
            model_shape = [d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape]
            shape = bench_inputs.resolve_shape(model_shape, 1, model=str(path))
            buffers = bench_inputs.random_inputs(shape, "float32")
            return [d * 1e3 for d in bare_loop(session, buffers, args.warmup, args.runs)]

        harness_ms, bare_ms, pair_ratios = [], [], []
        for block in range(args.blocks):
            first, second = (harness_block, bare_block) if block % 2 == 0 else (bare_block, harness_block)
            timed = {first: first(), second: second()}
            harness_ms += timed[harness_block]
            bare_ms += timed[bare_block]
            pair_ratios.append(np.median(timed[harness_block]) / np.median(timed[bare_block]))
    machine = machine_info()
    harness_p50, bare_p50 = float(np.median(harness_ms)), float(np.median(bare_ms))
    print(f"machine: {machine['cpu']}, {machine['cores']} cores {machine['cpu_flags']}, onnxruntime {machine['onnxruntime']}")
    print(f"model: {path.name if args.model else f'built CNN {args.size}x{args.size}x3'}, threads {args.threads}, "
          f"{args.blocks} alternating blocks x {args.runs} runs each")
    print(f"harness p50 {harness_p50:.4f} ms (p90 {np.percentile(harness_ms, 90):.4f})")
    print(f"bare    p50 {bare_p50:.4f} ms (p90 {np.percentile(bare_ms, 90):.4f})")
    pooled, paired = harness_p50 / bare_p50, float(np.median(pair_ratios))
    verdict = "within" if abs(paired - 1) <= 0.03 else "OUTSIDE"
    print(f"ratio harness/bare p50: pooled {pooled:.4f} ({(pooled - 1) * 100:+.2f}%), "
          f"median of {len(pair_ratios)} paired blocks {paired:.4f} ({(paired - 1) * 100:+.2f}%): {verdict} the 3% target")


if __name__ == "__main__":
    main()
