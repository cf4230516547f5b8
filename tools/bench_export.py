"""Export benchmark: fp32 vs int8 size, accuracy and CPU latency for TFLite and ONNX, plus ONNX int8 variants.

Targets (printed, not asserted): int8 size <= 0.3x fp32, accuracy drop <= 1 pp.
Uses a run directory (``--run``, e.g. the pedestrian recipe's) or trains a MobileNet v2
(``--alpha``, default 0.35) on ../shared/data/pedestrian at 128x64 into ``--work`` when no run is given.
Latency: median of 5 interleaved rounds of the p50 of ``--runs`` batch-1 calls on one thread.

    nice python tools/bench_export.py --work /tmp/bench_export [--run runs/ped] [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_cnn.export import export
from edge_cnn.export.compact import compact_file
from edge_cnn.export.exporter import without_softmax
from edge_cnn.export.onnx import convert_onnx
from edge_cnn.export.onnx_quant import OnnxQuantOptions, quantize_onnx
from edge_cnn.export.parity import compare, load_artifact, quick_latency
from edge_cnn.export.source import calibration_items
from edge_cnn.keras import keras
from edge_cnn.preprocess import PreprocessSpec, is_image_file
from edge_cnn.report import print_table
from edge_cnn.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
PEDESTRIAN = REPO.parent / "shared" / "data" / "pedestrian"
ONNX_VARIANTS = {
    "qdq per-channel u8s8 reduce_range (default)": OnnxQuantOptions(),
    "qdq per-channel u8s8": OnnxQuantOptions(reduce_range=False),
    "qdq per-channel s8s8": OnnxQuantOptions(activation_type="s8", reduce_range=False),
    "qdq per-channel s8s8 reduce_range": OnnxQuantOptions(activation_type="s8"),
    "qdq per-tensor s8s8": OnnxQuantOptions(activation_type="s8", reduce_range=False, per_channel=False),
    "qoperator per-channel s8s8": OnnxQuantOptions(format="qoperator", activation_type="s8", reduce_range=False),
    "qoperator per-channel u8s8 reduce_range": OnnxQuantOptions(format="qoperator"),
}


def vnni_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return sorted(set(re.findall(r"\b(avx512_vnni|avx_vnni)\b", text)))


def cpu_name() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = re.search(r"model name\s*:\s*(.*)", text)
    return found.group(1) if found else "unknown CPU"


def train_pedestrian_run(work: Path, epochs: int, alpha: float) -> Path:
    """A run directory with a MobileNet v2 (width ``alpha``) trained on the pedestrian set at 128x64."""
    from edge_cnn.zoo import build

    run = RunDir(work / f"ped_run_alpha{alpha:g}")
    if run.model_path.is_file():
        return run.path
    spec = PreprocessSpec(height=128, width=64, color="rgb")
    labels = ["background", "person"]
    items = [
        (str(p), labels.index(folder))
        for folder in labels
        for p in sorted((PEDESTRIAN / folder).iterdir())
        if is_image_file(p)
    ]
    order = np.random.default_rng(0).permutation(len(items))
    items = [items[i] for i in order]
    n_test = n_val = len(items) // 7
    splits = {"test": items[:n_test], "val": items[n_test : n_test + n_val], "train": items[n_test + n_val :]}
    x_train, y_train = spec([p for p, _ in splits["train"]]), np.array([l for _, l in splits["train"]])
    x_val, y_val = spec([p for p, _ in splits["val"]]), np.array([l for _, l in splits["val"]])
    keras.utils.set_random_seed(0)
    model = build("mobilenet_v2", input_shape=spec.input_shape, num_classes=2, alpha=alpha)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=32, verbose=2)
    run.path.mkdir(parents=True, exist_ok=True)
    model.save(run.model_path)
    run.write_labels(labels)
    spec.save(run.preprocess_path)
    for name, split in splits.items():
        run.write_split(name, split)
    return run.path


def bench_latencies(
    artifacts: dict[str, tuple[Path, str]], x: np.ndarray, runs: int, rounds: int = 5
) -> dict[str, float]:
    """Median over ``rounds`` of the p50 ms of batch-1 calls on one thread, the artifacts taking turns
    within each round so that load from other processes on a shared CPU hits them all alike."""
    loaded = {name: load_artifact(path, format) for name, (path, format) in artifacts.items()}
    samples: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(rounds):
        for name, artifact in loaded.items():
            samples[name].append(quick_latency(artifact, x, warmup=10, runs=runs))
    return {name: float(np.median(values)) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run directory to export (default: train one on the pedestrian set)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_export")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.35, help="MobileNet v2 width of the model trained here")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per artifact and round")
    args = parser.parse_args()

    flags = vnni_flags()
    print(f"CPU: {cpu_name()}; VNNI: {', '.join(flags) or 'none (AVX2 int8 needs pmaddubsw/pmaddwd, no VNNI)'}")
    started = time.time()
    run = args.run or train_pedestrian_run(args.work, args.epochs, args.alpha)
    print(f"model ready in {time.time() - started:.0f} s: {run}")
    result = export(run, out=args.work / "export", int8=True)
    print_table(result.rows, title="edgecnn export (quick latency: p50 of 20 batch-1 calls, 1 thread)")

    run_dir = RunDir(run)
    x = run_dir.preprocess()([p for p, _ in run_dir.read_split("test")])
    y = np.array([label for _, label in run_dir.read_split("test")])
    model = keras.models.load_model(run_dir.model_path)
    reference = model.predict(x, verbose=0)
    keras_accuracy = 100.0 * float(np.mean(reference.argmax(1) == y))

    manifest = result.manifest
    files = {(a.format, a.precision): (manifest.artifact_path(a), a.format) for a in manifest.artifacts}
    latency = bench_latencies(files, x, args.runs)
    rows = []
    for format in ("tflite", "onnx"):
        fp32, int8 = manifest.find(format, "fp32")[0], manifest.find(format, "int8")[0]
        fp32_ms, int8_ms = latency[(format, "fp32")], latency[(format, "int8")]
        rows.append(
            {
                "Runtime": "LiteRT" if format == "tflite" else "onnxruntime CPU",
                "fp32 MB": fp32.bytes / 1e6,
                "int8 MB": int8.bytes / 1e6,
                "Size ratio": int8.bytes / fp32.bytes,
                "fp32 acc (%)": fp32.parity["accuracy"],
                "int8 acc (%)": int8.parity["accuracy"],
                "Drop (pp)": int8.parity["accuracy_drop_pp"],
                "fp32 p50 (ms)": fp32_ms,
                "int8 p50 (ms)": int8_ms,
                "int8 speed-up": fp32_ms / int8_ms,
            }
        )
    print_table(
        rows, title=f"fp32 vs int8 (Keras test accuracy {keras_accuracy:.2f}%, {len(x)} images, {args.runs} runs)"
    )

    logits_onnx = convert_onnx(without_softmax(model))  # what the exporter quantizes (int8 outputs logits)
    calibration = run_dir.preprocess()([path for path, _ in calibration_items(run_dir.read_split("train"), 200)])
    variants, paths = [], {}
    for name, options in ONNX_VARIANTS.items():
        path = args.work / "variants" / f"{re.sub(r'[^a-z0-9]+', '_', name)}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        quantize_onnx(logits_onnx, path, calibration, options)
        compact_file(path, "onnx")  # as the exporter ships it, so sizes compare with the manifest's
        paths[name] = (path, "onnx")
        checked = compare(load_artifact(path, "onnx", logits=True), x, y, reference, keras_accuracy, "int8")
        variants.append(
            {
                "ONNX int8 variant": name,
                "MB": path.stat().st_size / 1e6,
                "Test acc (%)": checked["accuracy"],
                "Drop (pp)": checked["accuracy_drop_pp"],
            }
        )
    for row, ms in zip(variants, bench_latencies(paths, x, args.runs).values()):
        row["p50 (ms)"] = ms
    print_table(variants, title="ONNX Runtime int8 variants (CPU, 1 thread, batch 1)")
    within = [v for v in variants if v["Drop (pp)"] <= 1.0]
    if within:
        fastest = min(within, key=lambda v: v["p50 (ms)"])
        print(f"fastest within 1 pp: {fastest['ONNX int8 variant']} ({fastest['p50 (ms)']:.3f} ms)")
    print(f"total {time.time() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
