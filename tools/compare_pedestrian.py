"""Pedestrian windows: OpenCV's HOG + linear SVM vs the exported CNN (fp32 and int8) on the SAME held-out windows.

Issue 7's targets: int8 accuracy >= 99% on the source-grouped test split, ROC AUC above HOG+SVM's on the
Penn-Fudan-only pair (pennfudan_* person vs pennfudan_bg_* background: same photos on both sides), and a
per-window latency of the int8 model below HOG+SVM's. This script measures; it asserts nothing.

Scores: HOG+SVM's margin (person if > 0); the CNN's P(person) (person = the arg-max class).
Latency: median ms per single window (and its ratio to HOG+SVM's), windows timed one by one, from the decoded
uint8 64x128 window: HOG computes its descriptor and the SVM margin; the CNN goes through
``Predictor.probabilities`` (a resize where the model's input is not the window's size, the pixel table that
normalizes and quantizes an int8 input, the forward pass, batch 1). Both on ``--threads`` threads.
"Model-only" times the CNN on an already preprocessed float window (input quantization and forward pass).
"Batched" is the CNN's cost per window when ``--batch`` windows go through one call, as ``edgecnn detect`` runs
them (median over the batches of the test windows, preprocessing included). HOG+SVM has no such mode for
separate windows (OpenCV computes one descriptor per call), so its row leaves that column empty.
Every figure is the median of ``--rounds`` rounds in which all methods are timed in turn, so a change of
load on a shared machine hits them alike.

    python tools/compare_pedestrian.py --run runs/ped --out runs/ped/compare
    python tools/compare_pedestrian.py --run runs/ped --limit 50 --out /tmp/cmp   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

SUBSETS = {"all test windows": "", "Penn-Fudan only": "pennfudan"}
COLUMNS = ["Subset", "Method", "Windows", "Accuracy (%)", "ROC AUC", "Latency p50 (ms/window)", "Latency / HOG+SVM",
           "Latency input", "Model-only p50 (ms/window)", "Batched p50 (ms/window)"]
CNN_VARIANTS = [("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]


def ensure_export(run: Path, formats: list[str]) -> Path:
    """RUN/export with fp32 and int8 artifacts; exported here (int8 included) when it is missing."""
    from edge_cnn.run_dir import RunDir

    export_dir = RunDir(run).require("model", "labels", "preprocess").export_dir
    if not (export_dir / "manifest.json").is_file():
        from edge_cnn.export import export

        print(f"exporting {run} (fp32 + int8: {', '.join(formats)}) ...", flush=True)
        export(run, formats=formats, int8=True)
    return export_dir


def load_cnns(export_dir: Path, formats: list[str], threads: int) -> dict[str, object]:
    """'CNN tflite int8' -> Predictor, for each exported variant; a missing one is skipped with a note."""
    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.runtime.predictor import Predictor

    predictors = {}
    for backend, precision in CNN_VARIANTS:
        if backend not in formats:
            continue
        try:
            predictors[f"CNN {backend} {precision}"] = Predictor.load(export_dir, backend=backend, precision=precision, threads=threads)
        except EdgeCNNError as exc:
            print(f"skipped CNN {backend} {precision}: {exc}", file=sys.stderr)
    if not predictors:
        raise SystemExit(f"error: no usable CNN artifact in {export_dir}: re-export the run")
    return predictors


def median_latency_ms(call, inputs: list, runs: int) -> float:
    """Median wall time of ``call(x)`` over up to ``runs`` inputs, one at a time (after 5 warm-up calls)."""
    from edge_cnn.bench.timing import summarize

    for item in inputs[:5]:
        call(item)
    durations = []
    for item in inputs[:runs]:
        started = time.perf_counter()
        call(item)
        durations.append(time.perf_counter() - started)
    return round(summarize(durations).p50_ms, 3)


def batched_latency_ms(call, windows: list, batch: int, rounds: int = 3) -> float:
    """Median over ``rounds`` passes of the wall time per window of ``call(stack of batch windows)``."""
    from edge_cnn.bench.timing import summarize

    stacks = [np.stack(windows[start:start + batch]) for start in range(0, len(windows), batch)]
    stacks = [stack for stack in stacks if len(stack) == batch] or stacks[:1]
    call(stacks[0])  # warm-up
    durations = []
    for _ in range(rounds):
        for stack in stacks:
            started = time.perf_counter()
            call(stack)
            durations.append((time.perf_counter() - started) / len(stack))
    return round(summarize(durations).p50_ms, 4)


def interleaved_ms(timers: dict[tuple[str, str], Callable[[], float]], rounds: int) -> dict[tuple[str, str], float]:
    """Run every timer (a call returning ms) once per round, all in turn; the median over the rounds."""
    measured: dict[tuple[str, str], list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            measured[name].append(timer())
    return {name: round(float(np.median(values)), 4) for name, values in measured.items()}


def first_per_class(items: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """The first ``limit`` items of each class, split order kept (all of them without a limit)."""
    if not limit:
        return items
    taken: dict[int, int] = {}
    chosen = []
    for path, label in items:
        if taken.get(label, 0) < limit:
            taken[label] = taken.get(label, 0) + 1
            chosen.append((path, label))
    return chosen


def metric_rows(method: str, names: list[str], is_person: np.ndarray, scores: np.ndarray, predicted: np.ndarray,
                latency_ms: float, latency_input: str, model_only_ms: float | None = None,
                batched_ms: float | None = None) -> list[dict]:
    from edge_cnn.baselines import roc_auc

    rows = []
    for subset, prefix in SUBSETS.items():
        chosen = np.array([name.startswith(prefix) for name in names])
        if not chosen.any():
            continue
        truth = is_person[chosen]
        auc = roc_auc(truth, scores[chosen]) if 0 < truth.sum() < len(truth) else None
        rows.append({
            "Subset": subset, "Method": method, "Windows": int(chosen.sum()),
            "Accuracy (%)": round(100 * float((predicted[chosen] == truth).mean()), 2),
            "ROC AUC": None if auc is None else round(auc, 4),
            "Latency p50 (ms/window)": latency_ms, "Latency input": latency_input,
            "Model-only p50 (ms/window)": model_only_ms, "Batched p50 (ms/window)": batched_ms,
        })
    return rows


def compare(run: Path, limit: int | None, formats: list[str], threads: int, timing_runs: int,
            batch: int = 64, rounds: int = 5) -> list[dict]:
    import cv2

    from edge_cnn.baselines import HogPeopleScorer
    from edge_cnn.preprocess import PreprocessSpec
    from edge_cnn.run_dir import RunDir

    cv2.setNumThreads(threads)
    export_dir = ensure_export(run, formats)
    run_dir = RunDir(run)
    labels = run_dir.labels()
    if "person" not in labels:
        raise SystemExit(f"error: {run_dir.labels_path} has no 'person' class: pass a pedestrian run")
    person = labels.index("person")
    items = first_per_class(run_dir.read_split("test"), limit)
    window_spec = PreprocessSpec(height=128, width=64, color="rgb")  # HOG's window; a no-op on 64x128 files
    windows = [window_spec.load_image(path) for path, _ in items]
    names = [Path(path).name for path, _ in items]
    is_person = np.array([label == person for _, label in items])
    print(f"{len(items)} test windows ({int(is_person.sum())} person) from {run_dir.split_path('test')}", flush=True)

    hog = HogPeopleScorer()
    hog_method = "HOG + linear SVM (OpenCV)"
    timers = {(hog_method, "single"): lambda: median_latency_ms(hog.score, windows, timing_runs)}
    cnns = load_cnns(export_dir, formats, threads)
    for method, predictor in cnns.items():
        singles = [predictor.preprocess([window]) for window in windows[:timing_runs]]
        timers[(method, "single")] = partial(median_latency_ms, predictor.probabilities, windows, timing_runs)
        timers[(method, "model")] = partial(median_latency_ms, partial(predictor.probabilities, preprocessed=True),
                                            singles, timing_runs)
        timers[(method, "batched")] = partial(batched_latency_ms, predictor.probabilities, windows, batch)
    print(f"timing {len(cnns) + 1} methods in {rounds} interleaved rounds ...", flush=True)
    ms = interleaved_ms(timers, rounds)

    margins = np.array([hog.score(w) for w in windows])
    rows = metric_rows(hog_method, names, is_person, margins, margins > 0, ms[(hog_method, "single")],
                       "uint8 64x128 window")
    for method, predictor in cnns.items():
        probabilities = predictor.probabilities(np.stack(windows))
        cnn_person = predictor.labels.index("person")
        rows += metric_rows(method, names, is_person, probabilities[:, cnn_person],
                            probabilities.argmax(axis=1) == cnn_person, ms[(method, "single")],
                            "uint8 64x128 window, batch 1", ms[(method, "model")], ms[(method, "batched")])
    for row in rows:
        row["Latency / HOG+SVM"] = round(row["Latency p50 (ms/window)"] / ms[(hog_method, "single")], 2)
    return sorted(rows, key=lambda row: list(SUBSETS).index(row["Subset"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/compare_pedestrian.py --run runs/ped --out runs/ped/compare\n"
               "  python tools/compare_pedestrian.py --run runs/ped --limit 50 --formats tflite --out /tmp/cmp",
    )
    parser.add_argument("--run", required=True, type=Path, help="pedestrian run directory (edgecnn train --out)")
    parser.add_argument("--limit", type=int, help="first N test windows of each class (a quick run)")
    parser.add_argument("--formats", default="tflite,onnx", help="CNN formats to export/measure [tflite,onnx]")
    parser.add_argument("--threads", type=int, default=1, help="threads for OpenCV and the CNN runtime [1]")
    parser.add_argument("--timing-runs", type=int, default=200, help="windows timed one by one [200]")
    parser.add_argument("--batch", type=int, default=64, help="windows per call for the batched column [64]")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; figures are their median [5]")
    parser.add_argument("--out", required=True, type=Path, help="folder for compare_pedestrian.{md,json}")
    args = parser.parse_args(argv)
    if min(args.rounds, args.timing_runs, args.batch) < 1:
        parser.error("--rounds, --timing-runs and --batch must be at least 1")

    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.report import print_table, to_markdown, write_reports

    try:
        rows = compare(args.run, args.limit, [f.strip() for f in args.formats.split(",") if f.strip()], args.threads,
                       args.timing_runs, args.batch, args.rounds)
    except EdgeCNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows, COLUMNS, title=f"Pedestrian windows: HOG+SVM vs CNN ({args.run})")
    print(to_markdown(rows, COLUMNS))
    args.out.mkdir(parents=True, exist_ok=True)
    write_reports(rows, json_path=args.out / "compare_pedestrian.json", md_path=args.out / "compare_pedestrian.md",
                  columns=COLUMNS, extra={"run": str(args.run.resolve()), "limit": args.limit, "threads": args.threads,
                         "batch": args.batch, "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
