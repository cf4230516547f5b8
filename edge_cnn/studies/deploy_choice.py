"""Is the runtime's default artifact the fastest on this CPU, and is edgecnn's best file as fast as hand-made ones?

Why: the export machine is seldom the device, and whether int8 pays depends on the CPU (VNNI/AMX above all)
and on the model's size, so a claim about the default choice must be measured per CPU kind. For each model,
in one run: every artifact edgecnn exports (TFLite and ONNX, fp32 and int8), the same Keras model converted
by hand (``tf2onnx.convert.from_keras`` for onnxruntime, ``TFLiteConverter.from_keras_model`` for LiteRT),
and the artifact ``Predictor.load`` picks on this CPU without a ``bench --select`` measurement (the rule).
Latency: batch 1, ``--threads`` intra-op threads, the median over ``--rounds`` interleaved rounds of the
p50 of ``--runs`` calls (inputs quantized beforehand, as ``bench`` times them). It prints the ratios the
targets are about: the default's p50 / the fastest's (target <= 1.05), "ours / hand-made" = edgecnn's
best / the best hand-made file's (target <= 1.0), and int8 / fp32 per operator type (which layers make int8 pay
or cost on this CPU): ONNX from onnxruntime's profiler, TFLite from each operator run alone (LiteRT's Python
interpreter has no profiler), beside the whole TFLite files' times. Zoo models have random weights (timing only), and
are calibrated on noise images; ``--run`` adds a trained run directory (e.g. the pedestrian recipe's).
With ``--prune-channels F`` the run is also exported thinner (``edgecnn export --prune-channels F``: the
fraction F of each prunable convolution's channels removed, or LAYER=CHANNELS_KEPT items, then fine-tuned
for ``--prune-epochs``, keeping the epoch of lowest validation loss), or with
``--target-latency MS`` by NetAdapt (``edgecnn export --target-latency MS``: channels removed layer by layer
where validation accuracy suffers least, until TFLite fp32 takes MS on this CPU), and its artifacts
("edgecnn pruned ...") are timed in the same rounds; the summary adds issue 17's ratio,
the run's TFLite fp32 p50 / the pruned export's default p50 (target >= 1.5), and the test accuracy lost
(export's parity accuracy on the run's test split; target <= 0.5 pp); ``--photos DIR`` adds the same ratio end to
end, ``edgecnn detect``'s sliding window per photo (file to boxes). Each ``--mixed OPS`` adds an ONNX int8
export that keeps those op types in float (``edgecnn export --onnx-float-ops OPS``), timed in the same rounds;
the summary's "best mixed / best fp32" says whether int8 where it pays and float elsewhere beats fp32 (< 1).
Reuse: what a run makes in ``--work`` (zoo models, exports, hand-made files) is kept, and a later run with the
same arguments only times it again. So a copy of ``--work`` (and of ``--run``'s directory) re-times on another
machine without TensorFlow, e.g. on the device, where only the runtime is installed; delete a model's folder in
``--work`` to make it again.

    nice edgecnn study deploy --work /tmp/deploy                       # MobileNetV2-224, ResNet-18-224
    nice edgecnn study deploy --work /tmp/deploy --run runs/ped --models small_convnet:64
    nice edgecnn study deploy --work /tmp/deploy --run runs/ped --prune-channels 0.5 --prune-epochs 10 --models ""
    nice edgecnn study deploy --work /tmp/deploy --run runs/ped --models "" --prune-epochs 60 \\
        --prune-channels stage1_conv=8,stage2_conv=16,stage3_conv=48 --photos ../shared/data/pennfudan/images
    nice edgecnn study deploy --work /tmp/deploy --run runs/ped --target-latency 0.08 --prune-epochs 10 --models ""
    nice edgecnn study deploy --work /tmp/deploy --mixed DepthwiseConv --mixed MaxPool,Add
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.config import DEFAULT_FINE_TUNE_EPOCHS, channel_plan, channel_plan_label
from edge_cnn.preprocess import find_images
from edge_cnn.studies.shared import comma_list, interleaved_medians, one_line_errors, study_parser, write_report

DEFAULT_MODELS = "mobilenet_v2:224,resnet18:224"
COLUMNS = ["Model", "Artifact", "Size (MB)", "Test accuracy (%)", "p50 (ms)", "x fastest", "Default"]
SUMMARY_COLUMNS = ["Model", "Default", "Fastest", "Default / fastest", "Ours / hand-made", "Best mixed",
                   "Best mixed / best fp32", "Pruned default", "TFLite fp32 / pruned default", "Pruned accuracy drop (pp)",
                   "Detect ms/photo, TFLite fp32", "Detect ms/photo, pruned default", "Detect: TFLite fp32 / pruned"]
PRUNED = "edgecnn pruned"
MIXED = "edgecnn onnx int8,"  # + "OPS float": the mixed-precision exports of --mixed


def model_spec(text: str) -> tuple[str, int]:
    """``name:size`` (``mobilenet_v2:224``) -> (zoo name, square input size)."""
    name, _, size = text.partition(":")
    try:
        return name, int(size or 224)
    except ValueError:
        raise EdgeCNNError(f"--models entry {text!r} must be NAME:SIZE, e.g. mobilenet_v2:224") from None


def zoo_source(folder: Path, name: str, size: int, calibration_images: int = 16) -> tuple[Path, dict]:
    """A random-weight zoo model saved as ``model.keras`` with its preprocess.json, labels.json and a folder
    of noise images to calibrate on: what ``edgecnn export`` takes for a bare Keras file."""
    images = folder / "calibration"
    options = {"preprocess": folder / "preprocess.json", "labels": folder / "labels.json", "calib_data": images,
               "calib": calibration_images}
    if (folder / "model.keras").is_file():  # an earlier run's (the same seed): kept, see reuse in the docstring
        return folder / "model.keras", options
    from PIL import Image

    from edge_cnn import zoo
    from edge_cnn.io import atomic_path, write_json
    from edge_cnn.keras import keras
    from edge_cnn.preprocess import PreprocessSpec

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = zoo.build(name, input_shape=(size, size, 3), num_classes=10)
    PreprocessSpec(size, size, "rgb").save(folder / "preprocess.json")
    write_json(folder / "labels.json", [f"class_{i}" for i in range(10)])
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(calibration_images):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"noise_{index}.png")
    with atomic_path(folder / "model.keras") as keras_tmp:  # last and whole: its presence says the folder is complete
        model.save(keras_tmp)
    return folder / "model.keras", options


def hand_made_files(keras_file: Path, folder: Path) -> dict[str, tuple[Path, str, None]]:
    """The Keras model converted as a user would by hand, without edgecnn: fp32 ONNX and fp32 TFLite (an
    earlier run's files in ``folder`` are kept, see reuse in the module docstring)."""
    onnx_path, tflite_path = folder / "hand_tf2onnx.onnx", folder / "hand_tfliteconverter.tflite"
    if not (onnx_path.is_file() and tflite_path.is_file()):
        import tf2onnx

        from edge_cnn.io import atomic_path, write_bytes
        from edge_cnn.keras import tf
        from edge_cnn.keras_file import load_keras_model

        model = load_keras_model(keras_file)
        spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")]
        with atomic_path(onnx_path) as onnx_tmp:  # whole files only: a later run reuses them
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(onnx_tmp))
        write_bytes(tflite_path, tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return {"hand-made tf2onnx fp32": (onnx_path, "onnx", None),
            "hand-made TFLiteConverter fp32": (tflite_path, "tflite", None)}


def edgecnn_files(export_dir: Path, prefix: str = "edgecnn") -> dict[str, tuple[Path, str, float | None]]:
    """'PREFIX tflite int8' -> (file, format, test accuracy from export's parity) for each usable artifact."""
    from edge_cnn.manifest import load_manifest

    manifest = load_manifest(export_dir)
    return {f"{prefix} {a.format} {a.precision}": (manifest.verified_path(a), a.format, a.parity.get("accuracy"))
            for a in manifest.artifacts if a.format in ("tflite", "onnx") and a.parity.get("status") != "FAILED"}


def latencies(files: dict[str, tuple[Path, str, float | None]], size: tuple[int, ...], threads: int, runs: int,
              rounds: int) -> dict[str, float]:
    """{name: median over ``rounds`` of the p50 ms of ``runs`` batch-1 calls}, every file in turn per round."""
    from edge_cnn.backends import open_backend
    from edge_cnn.timing import time_calls

    x = np.random.default_rng(1).random((8, *size), dtype=np.float32)
    timers = {}
    for name, (path, format, _) in files.items():
        backend = open_backend(path, backend=format, threads=threads)
        info = backend.inputs[0]
        samples = [_as_input(x[i:i + 1], info) for i in range(len(x))]
        timers[name] = partial(lambda run, batch: time_calls(run, batch, warmup=5, runs=runs).p50_ms, backend.run, samples)
    return interleaved_medians(timers, rounds)


def _as_input(batch: np.ndarray, info) -> np.ndarray:
    """A float batch in the tensor's own type (an int8 input quantized with its scale and zero point)."""
    if np.dtype(info.dtype) == np.float32:
        return batch
    scale, zero = info.quantization or (1.0, 0)
    limits = np.iinfo(info.dtype)
    return np.clip(np.round(batch / scale + zero), limits.min, limits.max).astype(info.dtype)


def operator_family(op: str) -> str:
    """The float operator an int8 kernel stands for (``QLinearConv`` -> ``Conv``, ``NhwcMaxPool`` -> ``MaxPool``),
    so fp32 and int8 times line up; conversions the int8 graph adds are named as such."""
    if op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
        return "(quantize/dequantize)"
    if op.startswith("Reorder"):
        return "(layout reorder)"
    for prefix in ("QLinear", "Nhwc"):
        op = op.removeprefix(prefix)
    return op


def operator_rows(label: str, files: dict[str, tuple[Path, str, float | None]], threads: int, runs: int, rounds: int,
                  work: Path) -> list[dict]:
    """ms per operator type of edgecnn's fp32 and int8 files and the int8/fp32 ratio: onnxruntime's profile of
    the ONNX pair, and each operator of the TFLite pair run alone (LiteRT has no profiler in Python; see
    ``edge_cnn.bench.litert_ops``), with the whole TFLite files' times and the sum of their operators beside."""
    from edge_cnn.bench import run as bench
    from edge_cnn.bench.config import BenchConfig
    from edge_cnn.bench.litert_ops import operator_times, totals_by_type

    rows = []
    paths = [files[name][0] for name in ("edgecnn onnx fp32", "edgecnn onnx int8") if name in files]
    if len(paths) == 2:
        report = bench(paths, BenchConfig(runs=runs, warmup=5, threads=str(threads), profile=True,
                                          profile_dir=str(work / "profiles"), progress=False))
        fp32, int8 = ({} for _ in range(2))
        for totals, result in zip((fp32, int8), report.results):
            for op in result.top_ops:
                family = operator_family(op["op"])
                totals[family] = totals.get(family, 0.0) + op["total_ms"]
        rows += _ratio_rows(label, "onnxruntime profile", fp32, int8)
    paths = [files[name][0] for name in ("edgecnn tflite fp32", "edgecnn tflite int8") if name in files]
    if len(paths) == 2:
        (fp32_ops, fp32_whole), (int8_ops, int8_whole) = (operator_times(path, threads, runs, rounds) for path in paths)
        fp32, int8 = totals_by_type(fp32_ops), totals_by_type(int8_ops)
        rows += _ratio_rows(label, "LiteRT, each operator alone", fp32, int8)
        rows += _ratio_rows(label, "LiteRT, each operator alone", {"(sum of operators)": sum(fp32.values())},
                            {"(sum of operators)": sum(int8.values())})
        rows += _ratio_rows(label, "LiteRT, whole file", {"(whole file)": fp32_whole}, {"(whole file)": int8_whole})
    return rows


def _ratio_rows(label: str, how: str, fp32: dict[str, float], int8: dict[str, float]) -> list[dict]:
    """One row per operator type, the most time first."""
    return [{"Model": label, "Measured by": how, "Operator": op, "fp32 ms": fp32.get(op), "int8 ms": int8.get(op),
             "int8 / fp32": int8[op] / fp32[op] if op in fp32 and op in int8 and fp32[op] else None}
            for op in sorted(set(fp32) | set(int8), key=lambda name: -(fp32.get(name, 0.0) + int8.get(name, 0.0)))]


def detect_latencies(predictors: dict, photos: list[Path], rounds: int) -> dict[str, float]:
    """{name: median over ``rounds`` of the mean ms per photo} of ``edgecnn detect``'s sliding window (its
    defaults: stride 16, pyramid step 1.25) with each ``Predictor``, every one in turn per round: end to end,
    from the image file to the boxes (decoding, pyramid, per-window preprocessing, the model, NMS). The class
    slid is ``person``, or the last label of another classifier (the time does not depend on which)."""
    import time

    from edge_cnn.detect.detector import PedestrianDetector

    detectors = {}
    for name, predictor in predictors.items():
        labels = list(predictor.labels)
        detectors[name] = PedestrianDetector(predictor, positive="person" if "person" in labels else labels[-1])
        detectors[name].detect(photos[0])  # warm-up: the interpreter's first call

    def per_photo(detector) -> float:
        start = time.perf_counter()
        for photo in photos:
            detector.detect(photo)
        return (time.perf_counter() - start) * 1000 / len(photos)

    return interleaved_medians({name: partial(per_photo, detector) for name, detector in detectors.items()}, rounds)


def measure_model(label: str, source: Path, export_options: dict, work: Path, threads: int, runs: int,
                  rounds: int, prune: dict | None = None, mixed: tuple[str, ...] = (),
                  photos: list[Path] = ()) -> tuple[list[dict], dict, list[dict]]:
    """Export (with ``prune``, thinner too; per ``mixed`` entry, an ONNX int8 model keeping those op types in
    float), convert by hand, time everything interleaved, and ask the runtime for its default; with ``prune``
    and ``photos``, also time detection on them end to end, today's TFLite fp32 against the pruned default."""
    from edge_cnn.export import export
    from edge_cnn.export.config import ExportConfig
    from edge_cnn.manifest import load_manifest
    from edge_cnn.run_dir import RunDir
    from edge_cnn.runtime.artifacts import resolve

    folder = work / label
    folder.mkdir(parents=True, exist_ok=True)
    pruned_folder = folder / ("export_" + "_".join(
        key if value is True else f"{key}{channel_plan_label(channel_plan(value)) if key == 'prune_channels' else value}"
        for key, value in sorted((prune or {}).items()) if value not in (False, None)))
    exports = {"edgecnn": folder / "export", **({PRUNED: pruned_folder} if prune else {})}
    for prefix, export_dir in exports.items():
        if not (export_dir / "manifest.json").is_file():
            export(source, ExportConfig(int8=True, out=str(export_dir), **export_options,
                                        **(prune if prefix == PRUNED else {})))
    files = {name: entry for prefix, export_dir in exports.items() for name, entry in edgecnn_files(export_dir, prefix).items()}
    for ops in mixed:
        export_dir = folder / f"export_float_{ops.replace(',', '_')}"
        if not (export_dir / "manifest.json").is_file():
            export(source, ExportConfig(int8=True, format="onnx", onnx_float_ops=ops, out=str(export_dir), **export_options))
        int8 = edgecnn_files(export_dir).get("edgecnn onnx int8")
        if int8 is None:  # e.g. DepthwiseConv in a model without one: the other models still get it
            print(f"{label}: no ONNX int8 model with {ops} float (see {export_dir / 'report.md'})", flush=True)
            continue
        files[f"{MIXED} {ops} float"] = int8
    files.update(hand_made_files(source if source.suffix == ".keras" else RunDir(source).model_path, folder))
    spec = load_manifest(exports["edgecnn"]).preprocess
    measured = latencies(files, (spec.height, spec.width, spec.channels), threads, runs, rounds)
    defaults = {}
    for prefix, export_dir in exports.items():
        pick = resolve(export_dir)
        defaults[prefix] = f"{prefix} {pick.artifact.format} {pick.artifact.precision}"
        print(f"{label}: the runtime's default{' for the pruned export' if prefix == PRUNED else ''} is "
              f"{defaults[prefix]}: {pick.reason}", flush=True)
    default = defaults["edgecnn"]
    fastest = min((name for name in measured if not name.startswith((PRUNED, MIXED))), key=measured.get)
    rows = [{"Model": label, "Artifact": name, "Size (MB)": files[name][0].stat().st_size / 1e6,
             "Test accuracy (%)": files[name][2], "p50 (ms)": ms, "x fastest": ms / measured[fastest],
             "Default": "<- default" if name in defaults.values() else ""}
            for name, ms in sorted(measured.items(), key=lambda item: item[1])]
    ours = min(ms for name, ms in measured.items() if name.startswith("edgecnn "))
    theirs = min(ms for name, ms in measured.items() if name.startswith("hand-made"))
    summary = {"Model": label, "Default": default, "Fastest": fastest,
               "Default / fastest": measured[default] / measured[fastest], "Ours / hand-made": ours / theirs}
    if any(name.startswith(MIXED) for name in measured):
        best_mixed = min((name for name in measured if name.startswith(MIXED)), key=measured.get)
        best_fp32 = min((name for name in measured if name.startswith("edgecnn ") and name.endswith(" fp32")
                         and not name.startswith(PRUNED)), key=measured.get)
        summary.update({"Best mixed": best_mixed, "Best mixed / best fp32": measured[best_mixed] / measured[best_fp32]})
    if prune:
        pruned, today = defaults[PRUNED], "edgecnn tflite fp32"
        summary.update({"Pruned default": pruned, "TFLite fp32 / pruned default": measured[today] / measured[pruned],
                        "Pruned accuracy drop (pp)": _drop(files[today][2], files[pruned][2])})
        if photos:
            from edge_cnn.runtime import Predictor

            detect_ms = detect_latencies({"today": Predictor.load(exports["edgecnn"], backend="tflite",
                                                                  precision="fp32", threads=threads),
                                          "pruned": Predictor.load(exports[PRUNED], threads=threads)}, photos, rounds)
            summary.update({"Detect ms/photo, TFLite fp32": detect_ms["today"],
                            "Detect ms/photo, pruned default": detect_ms["pruned"],
                            "Detect: TFLite fp32 / pruned": detect_ms["today"] / detect_ms["pruned"]})
    return rows, summary, operator_rows(label, files, threads, runs, rounds, folder)


def _drop(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else before - after


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from edge_cnn.machine import cpu_fingerprint, int8_accelerated

    parser = study_parser(__doc__, prog)
    parser.add_argument("--work", type=Path, required=True, help="folder for the models, exports and reports")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"zoo NAME:SIZE list [{DEFAULT_MODELS}]")
    parser.add_argument("--run", type=Path, help="also a trained run directory (its export is made in --work)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime [1]")
    parser.add_argument("--runs", type=int, default=50, help="calls per timing [50]")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds [5]")
    parser.add_argument("--prune-channels", metavar="F|LAYER=N,...",
                        help="with --run: also export it with this fraction of channels pruned (or these channels "
                             "kept per named convolution: `edgecnn export --prune-channels`), timed alongside")
    parser.add_argument("--target-latency", type=float, metavar="MS",
                        help="with --run: instead of --prune-channels, prune it with NetAdapt to this TFLite fp32 "
                             "latency on this CPU (`edgecnn export --target-latency`), timed alongside")
    parser.add_argument("--prune-epochs", type=int, default=DEFAULT_FINE_TUNE_EPOCHS,
                        help=f"fine-tuning epochs of --prune-channels / --target-latency [{DEFAULT_FINE_TUNE_EPOCHS}]")
    parser.add_argument("--distill", action="store_true",
                        help="fine-tune the pruned model with the unpruned one as teacher (`edgecnn export --distill`)")
    parser.add_argument("--prune-lr", type=float, metavar="LR",
                        help="fine-tune the pruned model with a cosine decay from LR (`edgecnn export --prune-lr`)")
    parser.add_argument("--photos", type=Path, metavar="DIR",
                        help="with --run and a pruning: also time `edgecnn detect` end to end on these photos, "
                             "today's TFLite fp32 against the pruned default, interleaved")
    parser.add_argument("--photo-count", type=int, default=10, help="the first N images of --photos [10]")
    parser.add_argument("--mixed", action="append", default=[], metavar="OPS",
                        help="also an ONNX int8 export keeping these op types float (`export --onnx-float-ops`), "
                             "timed alongside; repeat for several, e.g. --mixed DepthwiseConv --mixed Conv,MaxPool")
    args = parser.parse_args(argv)
    pruning = {key: value for key, value in (("prune_channels", args.prune_channels),
                                             ("target_latency", args.target_latency)) if value is not None}
    if pruning and args.run is None:
        parser.error("--prune-channels and --target-latency prune and fine-tune a trained model: give --run RUN")
    if len(pruning) > 1:
        parser.error("--prune-channels and --target-latency are two ways to prune: give one")
    if (args.distill or args.prune_lr is not None) and not pruning:
        parser.error("--distill and --prune-lr shape the pruned model's fine-tune: give --prune-channels or "
                     "--target-latency")
    if args.photos is not None and not pruning:
        parser.error("--photos times the pruned export against today's: give --prune-channels or --target-latency")
    photos = find_images(args.photos, "--photos")[:max(1, args.photo_count)] if args.photos is not None else []
    sources = []
    if args.run is not None:
        if not (args.run / "model.keras").is_file():
            raise EdgeCNNError(f"--run {args.run} holds no model.keras: give a run directory of `edgecnn train`")
        sources.append((args.run.name, args.run, {}))
    for name, size in map(model_spec, comma_list(args.models)):
        label = f"{name}-{size}"
        sources.append((label, *zoo_source(args.work / label / "source", name, size)))
    print(f"machine: {cpu_fingerprint()}; threads {args.threads}", flush=True)
    rows, summaries, operators = [], [], []
    for label, source, options in sources:
        print(f"{label}: export, hand-made conversion, timing", flush=True)
        prune = (pruning | {"prune_epochs": args.prune_epochs, "distill": args.distill, "prune_lr": args.prune_lr}
                 if pruning and source == args.run else None)
        model_rows, summary, model_operators = measure_model(label, source, options, args.work, args.threads,
                                                             args.runs, args.rounds, prune, tuple(args.mixed),
                                                             photos if prune else [])
        rows += model_rows
        summaries.append(summary)
        operators += model_operators
    fingerprint = cpu_fingerprint()
    facts = {"cpu": fingerprint, "int8_accelerated": int8_accelerated(), "threads": args.threads,
             "runs": args.runs, "rounds": args.rounds}
    write_report(rows, facts, COLUMNS, "every artifact, fastest first", args.work, "deploy_artifacts")
    write_report(summaries, facts, SUMMARY_COLUMNS, "the default choice and edgecnn against hand-made files",
                 args.work, "deploy_summary")
    if operators:
        write_report(operators, facts, list(operators[0]), "ms per operator type, int8 / fp32",
                     args.work, "deploy_operators")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
