"""Pedestrian windows: OpenCV's HOG + linear SVM vs the exported CNN (fp32 and int8) on the SAME held-out windows.

Why: issue 7's targets are int8 accuracy >= 99% on the source-grouped test split, ROC AUC above HOG+SVM's
on the Penn-Fudan-only pair (pennfudan_* person vs pennfudan_bg_* background: same photos on both sides),
and a per-window latency of the int8 model below HOG+SVM's. This study measures; it asserts nothing.

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

Degraded rows (issue 15, "robust windows too"): the same test windows turned grey, shrunk to 36x18 (height x
width, area averaging: a distant pedestrian on a low-resolution camera) and brought back to 128x64 (bilinear), by
``detect_compare.degrade``, the whole-photo study's own degradation; accuracy and ROC AUC of every method, no
latency (the same cost as above).

    edgecnn study pedestrian --run runs/ped --out runs/ped/compare
    edgecnn study pedestrian --run runs/ped --limit 50 --formats tflite --out /tmp/cmp   # a quick look
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.formats import embedded_formats
from edge_cnn.studies.detect_compare import AS_TAKEN, degrade
from edge_cnn.studies.shared import (HOG_METHOD, add_runtime_options, ensure_export, first_per_class, hog_window,
                                     interleaved_medians, load_cnns, median_latency_ms, one_line_errors,
                                     study_parser, write_report)

SUBSETS = {"all test windows": "", "Penn-Fudan only": "pennfudan"}
DEGRADED = "grey, 36x18 and back"  # the Windows column of the degraded rows
DEGRADED_WIDTH = 18  # pixels: 64 / 18 = 3.56x smaller (128 -> 36)
COLUMNS = ["Windows as", "Subset", "Method", "Windows", "Accuracy (%)", "ROC AUC", "Latency p50 (ms/window)",
           "Latency / HOG+SVM", "Latency input", "Model-only p50 (ms/window)", "Batched p50 (ms/window)"]


def batched_latency_ms(call: Callable, windows: list, batch: int, rounds: int = 3) -> float:
    """Median over ``rounds`` passes of the wall time per window of ``call(stack of batch windows)``."""
    from edge_cnn.timing import measure_calls, summarize

    stacks = [np.stack(windows[start:start + batch]) for start in range(0, len(windows), batch)]
    stacks = [stack for stack in stacks if len(stack) == batch] or stacks[:1]
    durations = measure_calls(call, stacks, warmup=1, runs=rounds * len(stacks))
    return round(summarize([seconds / len(stacks[0]) for seconds in durations]).p50_ms, 4)


def metric_rows(method: str, names: list[str], is_person: np.ndarray, scores: np.ndarray, predicted: np.ndarray,
                latency_ms: float | None, latency_input: str | None, model_only_ms: float | None = None,
                batched_ms: float | None = None) -> list[dict]:
    """One row per subset of ``SUBSETS``: accuracy, ROC AUC of ``scores`` and the latencies given."""
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


def compare(run: Path, limit: int | None = None, formats: Sequence[str] = embedded_formats(), threads: int = 1,
            timing_runs: int = 200, batch: int = 64, rounds: int = 5) -> list[dict]:
    """The table's rows: HOG+SVM and every exported CNN of ``run`` (exported here when needed) on its test split."""
    import cv2

    from edge_cnn.baselines import HogPeopleScorer
    from edge_cnn.run_dir import RunDir

    cv2.setNumThreads(threads)
    export_dir = ensure_export(run, formats)
    run_dir = RunDir(run)
    labels = run_dir.labels()
    if "person" not in labels:
        raise EdgeCNNError(f"{run_dir.labels_path} has no 'person' class: pass a pedestrian run")
    person = labels.index("person")
    items = first_per_class(run_dir.read_split("test"), limit)
    window_spec = hog_window()
    windows = [window_spec.load_image(path) for path, _ in items]
    names = [Path(path).name for path, _ in items]
    is_person = np.array([label == person for _, label in items])
    print(f"{len(items)} test windows ({int(is_person.sum())} person) from {run_dir.split_path('test')}", flush=True)

    hog = HogPeopleScorer()
    timers = {(HOG_METHOD, "single"): lambda: median_latency_ms(hog.score, windows, timing_runs)}
    cnns = load_cnns(export_dir, formats, threads)
    for method, predictor in cnns.items():
        singles = [predictor.preprocess([window]) for window in windows[:timing_runs]]
        timers[(method, "single")] = partial(median_latency_ms, predictor.probabilities, windows, timing_runs)
        timers[(method, "model")] = partial(median_latency_ms, partial(predictor.probabilities, preprocessed=True),
                                            singles, timing_runs)
        timers[(method, "batched")] = partial(batched_latency_ms, predictor.probabilities, windows, batch)
    print(f"timing {len(cnns) + 1} methods in {rounds} interleaved rounds ...", flush=True)
    ms = {name: round(value, 4) for name, value in interleaved_medians(timers, rounds).items()}

    rows = scored_rows(AS_TAKEN, windows, names, is_person, hog, cnns, ms)
    low = [degrade(window, window.shape[1] / DEGRADED_WIDTH) for window in windows]
    rows += scored_rows(DEGRADED, low, names, is_person, hog, cnns)
    return sorted(rows, key=lambda row: ([AS_TAKEN, DEGRADED].index(row["Windows as"]),
                                         list(SUBSETS).index(row["Subset"])))


def scored_rows(condition: str, windows: list[np.ndarray], names: list[str], is_person: np.ndarray, hog, cnns: dict,
                ms: dict | None = None) -> list[dict]:
    """HOG+SVM's and every CNN's rows on ``windows`` (``condition``: how they were taken), with the latencies
    ``ms`` (method, kind) -> ms when given (the degraded windows are not timed)."""
    ms = ms or {}
    margins = np.array([hog.score(w) for w in windows])
    rows = metric_rows(HOG_METHOD, names, is_person, margins, margins > 0, ms.get((HOG_METHOD, "single")),
                       "uint8 64x128 window" if ms else None)
    for method, predictor in cnns.items():
        probabilities = predictor.probabilities(np.stack(windows))
        cnn_person = predictor.labels.index("person")
        rows += metric_rows(method, names, is_person, probabilities[:, cnn_person],
                            probabilities.argmax(axis=1) == cnn_person, ms.get((method, "single")),
                            "uint8 64x128 window, batch 1" if ms else None, ms.get((method, "model")),
                            ms.get((method, "batched")))
    for row in rows:
        row["Windows as"] = condition
        row["Latency / HOG+SVM"] = round(row["Latency p50 (ms/window)"] / ms[(HOG_METHOD, "single")], 2) if ms else None
    return rows


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--run", required=True, type=Path, help="pedestrian run directory (edgecnn train --out)")
    parser.add_argument("--limit", type=int, help="first N test windows of each class (a quick run)")
    add_runtime_options(parser, threads_help="threads for OpenCV and the CNN runtime [1]")
    parser.add_argument("--timing-runs", type=int, default=200, help="windows timed one by one [200]")
    parser.add_argument("--batch", type=int, default=64, help="windows per call for the batched column [64]")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; figures are their median [5]")
    parser.add_argument("--out", required=True, type=Path, help="folder for compare_pedestrian.{md,json}")
    args = parser.parse_args(argv)
    if min(args.rounds, args.timing_runs, args.batch) < 1:
        parser.error("--rounds, --timing-runs and --batch must be at least 1")

    rows = compare(args.run, args.limit, args.formats, args.threads, args.timing_runs, args.batch, args.rounds)
    facts = {"run": str(args.run.resolve()), "limit": args.limit, "threads": args.threads, "batch": args.batch,
             "rounds": args.rounds}
    write_report(rows, facts, COLUMNS, f"Pedestrian windows: HOG+SVM vs CNN ({args.run})", args.out,
                 "compare_pedestrian")
    return 0
