"""Is the harness honest? ``edgecnn bench``'s p50 against a bare ``session.run`` loop timed with ``time.perf_counter``.

Why: every latency in the README comes from the harness, so it must add next to nothing to what it times.
Same ONNX model, same process, same kind of input buffers, same thread count, and a fresh session for each
block on both sides (the harness opens one per call of ``run``). The reference loop is written out here on
purpose, not taken from ``edge_cnn.timing``: it is what the harness's timer is checked against. Blocks
alternate, and which side goes first alternates too, so that a noisy neighbour on a shared machine hits both
alike; the ratio is given over all runs pooled and as the median of the per-pair ratios (robust to load that
drifts during the run). Target: harness p50 within 3% of the bare loop's.

    edgecnn study overhead                 # the zoo's small_convnet x0.5 at 64x64, as ONNX
    edgecnn study overhead model.onnx --blocks 10 --runs 300 --threads 1
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.studies.shared import one_line_errors, study_parser


def build_model(folder: Path, size: int) -> Path:
    """The zoo's small_convnet x0.5 (3 stages of Conv-BN-ReLU-pool, 16-32-64 filters, GAP, 10 classes) as ONNX."""
    import onnx

    from edge_cnn import zoo
    from edge_cnn.export.onnx import convert_onnx
    from edge_cnn.keras import keras

    keras.utils.set_random_seed(0)
    model = zoo.build("small_convnet", input_shape=(size, size, 3), num_classes=10, width=0.5)
    path = folder / "overhead_cnn.onnx"
    onnx.save(convert_onnx(model), str(path))
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


def harness_block(path: Path, threads: int, warmup: int, runs: int) -> list[float]:
    """One call of ``edge_cnn.bench.run``: its per-call ms."""
    from edge_cnn.bench import run

    result = run(path, threads=(threads,), warmup=warmup, runs=runs, progress=False).results[0]
    if result.status != "OK":
        raise EdgeCNNError(f"harness failed: {result.error}")
    return result.durations_ms


def bare_block(path: Path, threads: int, warmup: int, runs: int) -> list[float]:
    """A fresh session, the harness's kind of random inputs, and ``bare_loop``: its per-call ms."""
    from edge_cnn.backends import open_backend
    from edge_cnn.bench import inputs as bench_inputs

    session = open_backend(path, threads=threads).session
    model_shape = [d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape]
    shape = bench_inputs.resolve_shape(model_shape, 1, model=str(path))
    buffers = bench_inputs.random_inputs(shape, "float32")
    return [d * 1e3 for d in bare_loop(session, buffers, warmup, runs)]


def compare_blocks(path: Path, blocks: int, threads: int, warmup: int, runs: int
                   ) -> tuple[list[float], list[float], list[float]]:
    """(harness ms, bare ms, per-pair ratios of the p50s) over ``blocks`` alternating pairs of blocks."""
    harness_ms, bare_ms, pair_ratios = [], [], []
    for block in range(blocks):
        first, second = (harness_block, bare_block) if block % 2 == 0 else (bare_block, harness_block)
        timed = {first: first(path, threads, warmup, runs), second: second(path, threads, warmup, runs)}
        harness_ms += timed[harness_block]
        bare_ms += timed[bare_block]
        pair_ratios.append(np.median(timed[harness_block]) / np.median(timed[bare_block]))
    return harness_ms, bare_ms, pair_ratios


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("model", nargs="?", help="an .onnx file (default: build a small CNN)")
    parser.add_argument("--size", type=int, default=64, help="input size of the built CNN")
    parser.add_argument("--blocks", type=int, default=20, help="alternating blocks of each kind")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from edge_cnn.machine import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else build_model(Path(tmp), args.size)
        harness_ms, bare_ms, pair_ratios = compare_blocks(path, args.blocks, args.threads, args.warmup, args.runs)
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
    return 0
