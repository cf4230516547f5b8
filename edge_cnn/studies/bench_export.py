"""Export benchmark: fp32 vs int8 size, accuracy and CPU latency for TFLite and ONNX, plus ONNX int8 variants.

Why: int8 is only worth shipping if it is much smaller, about as accurate and faster on the target CPU, and
which ONNX Runtime quantization is fastest depends on that CPU (VNNI above all), so the exporter's default
is chosen from this table. Targets (printed, not asserted): int8 size <= 0.3x fp32, accuracy drop <= 1 pp.
Uses a run directory (``--run``, e.g. the pedestrian recipe's) or trains a MobileNet v2 (``--alpha``, default
0.35) with ``edge_cnn.train`` on the pedestrian windows (``--data``) at 128x64 into ``--work`` when no run is
given. Latency: median of 5 interleaved rounds of the p50 of ``--runs`` batch-1 calls on one thread.

    nice edgecnn study export --work /tmp/bench_export --run runs/ped
    nice edgecnn study export --work /tmp/bench_export --epochs 8
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.onnx_quant import OnnxQuantOptions
from edge_cnn.formats import embedded_formats
from edge_cnn.studies.shared import interleaved_medians, one_line_errors, study_parser

ONNX_VARIANTS = {
    "qdq per-channel u8s8 reduce_range (default)": OnnxQuantOptions(),
    "qdq per-channel u8s8": OnnxQuantOptions(reduce_range=False),
    "qdq per-channel s8s8": OnnxQuantOptions(activation_type="s8", reduce_range=False),
    "qdq per-channel s8s8 reduce_range": OnnxQuantOptions(activation_type="s8"),
    "qdq per-tensor s8s8": OnnxQuantOptions(activation_type="s8", reduce_range=False, per_channel=False),
    "qoperator per-channel s8s8": OnnxQuantOptions(format="qoperator", activation_type="s8", reduce_range=False),
    "qoperator per-channel u8s8 reduce_range": OnnxQuantOptions(format="qoperator"),
}


def train_pedestrian_run(work: Path, data: Path, epochs: int, alpha: float) -> Path:
    """A run directory with a MobileNet v2 (width ``alpha``) trained on the pedestrian windows at 128x64
    (constant learning rate, no augmentation, 1/7 of the windows for validation and 1/7 for test);
    a finished one in ``work`` is reused."""
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig, train

    run = work / f"ped_run_alpha{alpha:g}"
    if RunDir(run).model_path.is_file():
        return run
    config = TrainConfig(data=str(data), out=str(run), model="mobilenet_v2", width=alpha, img_size="128x64",
                         color="rgb", epochs=epochs, fine_tune_epochs=0, batch_size=32, lr=1e-3, schedule="constant",
                         class_weights=False, val=1 / 7, test=1 / 7, seed=0)
    result = train(config, verbose=2)
    if result.interrupted:
        raise EdgeCNNError(f"training was interrupted: delete {run} and run again")
    return result.run_dir


def bench_latencies(artifacts: dict, x: np.ndarray, runs: int, rounds: int = 5) -> dict:
    """{name: (path, format)} -> {name: median over ``rounds`` of the p50 ms of ``runs`` batch-1 calls on one
    thread}, the artifacts taking turns within each round."""
    from edge_cnn.export.parity import load_artifact, quick_latency

    loaded = {name: load_artifact(path, format) for name, (path, format) in artifacts.items()}
    timers = {name: partial(quick_latency, artifact, x, warmup=10, runs=runs) for name, artifact in loaded.items()}
    return interleaved_medians(timers, rounds)


def fp32_int8_rows(manifest, latency: dict) -> list[dict]:
    """One row per runtime: the exported fp32 and int8 artifacts' size, accuracy and latency side by side."""
    rows = []
    for format in embedded_formats():
        fp32, int8 = manifest.find(format, "fp32")[0], manifest.find(format, "int8")[0]
        fp32_ms, int8_ms = latency[(format, "fp32")], latency[(format, "int8")]
        rows.append({
            "Runtime": "LiteRT" if format == "tflite" else "onnxruntime CPU",
            "fp32 MB": fp32.bytes / 1e6, "int8 MB": int8.bytes / 1e6, "Size ratio": int8.bytes / fp32.bytes,
            "fp32 acc (%)": fp32.parity["accuracy"], "int8 acc (%)": int8.parity["accuracy"],
            "Drop (pp)": int8.parity["accuracy_drop_pp"], "fp32 p50 (ms)": fp32_ms, "int8 p50 (ms)": int8_ms,
            "int8 speed-up": fp32_ms / int8_ms,
        })
    return rows


def onnx_variant_rows(run_dir, model, x: np.ndarray, y: np.ndarray, reference: np.ndarray, keras_accuracy: float,
                      folder: Path, runs: int) -> list[dict]:
    """Each of ``ONNX_VARIANTS`` quantized from the run's logits model and compacted as the exporter ships
    it (so sizes compare with the manifest's): size, test accuracy, drop against Keras and latency."""
    from edge_cnn.export.compact import compact_file
    from edge_cnn.export.surgery import without_softmax
    from edge_cnn.export.onnx import convert_onnx
    from edge_cnn.export.onnx_quant import quantize_onnx
    from edge_cnn.export.parity import compare, load_artifact
    from edge_cnn.export.source import calibration_items

    logits_onnx = convert_onnx(without_softmax(model))  # what the exporter quantizes (int8 outputs logits)
    calibration = run_dir.preprocess()([path for path, _ in calibration_items(run_dir.read_split("train"), 200)])
    rows, paths = [], {}
    for name, options in ONNX_VARIANTS.items():
        path = folder / f"{re.sub(r'[^a-z0-9]+', '_', name)}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        quantize_onnx(logits_onnx, path, calibration, options)
        compact_file(path, "onnx")
        paths[name] = (path, "onnx")
        checked = compare(load_artifact(path, "onnx", logits=True), x, y, reference, keras_accuracy, "int8")
        rows.append({"ONNX int8 variant": name, "MB": path.stat().st_size / 1e6, "Test acc (%)": checked["accuracy"],
                     "Drop (pp)": checked["accuracy_drop_pp"]})
    for row, ms in zip(rows, bench_latencies(paths, x, runs).values()):
        row["p50 (ms)"] = ms
    return rows


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from edge_cnn.recipes import load_recipe

    parser = study_parser(__doc__, prog)
    parser.add_argument("--run", type=Path, help="run directory to export (default: train one on --data)")
    parser.add_argument("--data", type=Path, default=Path(load_recipe("pedestrian")["data"]),
                        help="pedestrian windows to train on without --run [the pedestrian recipe's data]")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_export")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.35, help="MobileNet v2 width of the model trained here")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per artifact and round")
    args = parser.parse_args(argv)

    from edge_cnn.export import export
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.machine import cpu_info
    from edge_cnn.report import print_table
    from edge_cnn.run_dir import RunDir

    cpu = cpu_info()
    vnni = [flag for flag in cpu["flags"] if "vnni" in flag]
    print(f"CPU: {cpu['model']}; VNNI: {', '.join(vnni) or 'none (AVX2 int8 needs pmaddubsw/pmaddwd, no VNNI)'}")
    started = time.time()
    run = args.run or train_pedestrian_run(args.work, args.data, args.epochs, args.alpha)
    print(f"model ready in {time.time() - started:.0f} s: {run}")
    result = export(run, out=args.work / "export", int8=True)
    print_table(result.rows, title="edgecnn export (quick latency: p50 of 20 batch-1 calls, 1 thread)")

    run_dir = RunDir(run)
    x = run_dir.preprocess()([p for p, _ in run_dir.read_split("test")])
    y = np.array([label for _, label in run_dir.read_split("test")])
    model = load_keras_model(run_dir.model_path)
    reference = model.predict(x, verbose=0)
    keras_accuracy = 100.0 * float(np.mean(reference.argmax(1) == y))

    manifest = result.manifest
    files = {(a.format, a.precision): (manifest.artifact_path(a), a.format) for a in manifest.artifacts}
    rows = fp32_int8_rows(manifest, bench_latencies(files, x, args.runs))
    print_table(rows, title=f"fp32 vs int8 (Keras test accuracy {keras_accuracy:.2f}%, {len(x)} images, "
                            f"{args.runs} runs)")

    variants = onnx_variant_rows(run_dir, model, x, y, reference, keras_accuracy, args.work / "variants", args.runs)
    print_table(variants, title="ONNX Runtime int8 variants (CPU, 1 thread, batch 1)")
    within = [v for v in variants if v["Drop (pp)"] <= 1.0]
    if within:
        fastest = min(within, key=lambda v: v["p50 (ms)"])
        print(f"fastest within 1 pp: {fastest['ONNX int8 variant']} ({fastest['p50 (ms)']:.3f} ms)")
    print(f"total {time.time() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0
