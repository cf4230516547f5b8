"""Detection evaluation of a model on any box-annotated photos: the API behind ``edgecnn evaluate
RUN_OR_EXPORT --data annotations.json``.

A detector's metrics.json only scores the photos of its own training file's test split; a user who ships
it needs the same numbers on their own photos (another camera, another site), and needs the int8
artifacts measured exactly as the model they came from. So this reads the boxes with the toolkit's readers
(``edge_cnn.data.boxes``: COCO JSON, Pascal VOC, YOLO; bad annotations are reported and skipped) and the
optional person-free frames, runs every photo through

- a run directory: the Keras model, letterboxed, decoded and suppressed as training's evaluation does
  (``edge_cnn.train.box_route.detect_images``; TensorFlow imported only then), or
- an export folder: every artifact with a detection output, through the embedded runtime
  (``Predictor.detect``: the same letterbox and numpy decoding; no TensorFlow on this path),

and scores each model with the training split's own function (``edge_cnn.tasks.detect.detection_metrics``
over ``edge_cnn.box_metrics``): AP@0.5, AP@[.5:.95], log-average miss rate and false positives per
person-free frame at the model's operating threshold. It writes ``detection_report.json``, a
precision-recall plot and a miss-rate-versus-FPPI plot (``edge_cnn.detect.curves``) into ``out``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edge_cnn.box_metrics import miss_rate_curve, precision_recall_curve
from edge_cnn.data.boxes import YOLO_CLASSES_FILE, BoxImage, negatives as read_negatives, read_boxes
from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import ensure_writable_dir, write_json
from edge_cnn.manifest import MANIFEST_NAME, load_manifest, source_kind
from edge_cnn.tasks import get_task
from edge_cnn.tasks.detect import EVAL_THRESHOLD, MEANING, SCORE_THRESHOLD, Truth, detection_metrics

REPORT_NAME = "detection_report.json"
PR_NAME, MISS_RATE_NAME = "precision_recall.png", "miss_rate_fppi.png"
DEFAULT_OUT = "evaluation"  # under the source
BATCH = 32

# image paths -> per image (K, 6) detections (x, y, w, h, score, class index) in the image's pixels
Detector = Callable[[Sequence[str]], list[np.ndarray]]


@dataclasses.dataclass
class ModelResult:
    """One model's detection metrics (``detection_metrics``' dict), its curves per class, speed and size."""

    model: str  # "keras" or the artifact's path relative to the export folder
    kind: str  # "keras fp32", "tflite int8", ...
    metrics: dict[str, Any]
    curves: dict[str, dict[str, np.ndarray]]  # label -> recall, precision, fppi, miss_rate
    ms_per_image: float  # decode + letterbox + forward + NMS, batches, this process
    bytes: int | None  # model file size (None for the Keras model)
    detections: list[np.ndarray] = dataclasses.field(repr=False, default_factory=list)  # per image, photos then frames

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "ms_per_image": self.ms_per_image, "bytes": self.bytes,
                **self.metrics}


@dataclasses.dataclass
class DetectionReport:
    source: Path
    annotations: Path
    negatives: Path | None
    labels: list[str]
    photos: int
    frames: int
    boxes: int
    skipped: list[dict[str, str]]
    threshold: float
    models: list[ModelResult]
    report_json: Path
    precision_recall_png: Path
    miss_rate_png: Path

    def rows(self) -> list[dict[str, Any]]:
        """The terminal table: one row per model (FP/frame only when person-free frames were given)."""
        rows = []
        for item in self.models:
            metrics = item.metrics
            row = {"model": item.kind, "AP@0.5": metrics["ap_50"], "AP@[.5:.95]": metrics["ap_50_95"],
                   "miss rate": metrics["log_average_miss_rate"]}
            if self.frames:
                row["FP/frame"] = metrics["fp_per_frame"]
            rows.append({**row, "ms/image": item.ms_per_image})
        return rows


def evaluate_detection(
    source: str | os.PathLike,
    annotations: str | os.PathLike,
    negatives: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = BATCH,
) -> DetectionReport:
    """Evaluate ``source`` (a detect run directory or export folder) on the photos of ``annotations``
    (COCO .json, VOC folder or YOLO folder) and the person-free images under ``negatives``.

    ``threshold``: the score at which false positives per frame are counted (default: the manifest's
    operating threshold, training's for a run); AP and miss rate use every detection down to
    ``EVAL_THRESHOLD``. ``out`` defaults to ``SOURCE/evaluation``. Every check on the inputs (source,
    --out, annotations, frames) raises ``EdgeCNNError`` before any model loads."""
    source = Path(source)
    kind, task, labels, operating = describe_source(source)
    if get_task(task).data_kind != "boxes":
        raise EdgeCNNError(f"{source} holds a {task!r} model, and box annotations evaluate detection models only: "
                           "pass a run or export trained with --task detect, or evaluate this one on an image folder")
    if batch_size < 1:
        raise EdgeCNNError(f"batch size {batch_size} must be at least 1")
    out = ensure_writable_dir(Path(out) if out is not None else source / DEFAULT_OUT)
    photos, frames, skipped = read_truth(annotations, negatives, labels)
    threshold = operating if threshold is None else float(threshold)
    detectors = run_detectors(source, labels) if kind == "run" else export_detectors(source, labels)
    models = [score_model(name, model_kind, size, detect, photos, frames, labels, threshold, batch_size)
              for name, model_kind, size, detect in detectors]
    return write_report(source, Path(annotations), None if negatives is None else Path(negatives), labels, photos,
                        frames, skipped, threshold, models, out)


def describe_source(source: Path) -> tuple[str, str, list[str], float]:
    """(kind 'run' or 'export', task name, labels, operating score threshold) of ``source``."""
    from edge_cnn.run_dir import RunDir

    kind = source_kind(source)
    if kind == "run":
        run = RunDir(source)
        return kind, run.task(), run.labels(), SCORE_THRESHOLD
    manifest = load_manifest(source)
    return kind, manifest.task, list(manifest.labels), float(manifest.decoding.get("score_threshold", SCORE_THRESHOLD))


def source_task(source: str | os.PathLike) -> str | None:
    """The task of a run directory or export folder; None for anything else (the caller's own checks
    then say what is wrong). What ``edgecnn evaluate`` chooses its protocol by."""
    try:
        return describe_source(Path(source))[1]
    except (EdgeCNNError, OSError):
        return None


def read_truth(annotations: str | os.PathLike, negatives: str | os.PathLike | None,
               labels: Sequence[str]) -> tuple[list[tuple[BoxImage, Truth]], list[tuple[BoxImage, Truth]], list[dict[str, str]]]:
    """(photos, frames, skipped): each image with its ``Truth`` in the model's class indices. Boxes of a
    category the model does not know are skipped and reported; none left is an error."""
    annotations = Path(annotations)
    if not annotations.exists():
        raise EdgeCNNError(f"--data {annotations} does not exist: pass a COCO .json file, a folder of Pascal VOC .xml "
                           "files or a YOLO folder")
    dataset = _read_boxes(annotations, labels)
    skipped = list(dataset.skipped)
    photos = []
    for image in dataset.images:
        known = np.array([label in labels for label in image.labels], dtype=bool)
        for label in sorted({label for label in image.labels if label not in labels}):
            skipped.append({"file": str(image.path), "annotation": label,
                            "reason": f"category {label!r} is not one of the model's labels {list(labels)}"})
        classes = np.array([list(labels).index(label) for label in image.labels if label in labels], dtype=np.int64)
        photos.append((image, Truth(image.boxes[known], classes, image.ignore[known], False)))
    if not photos or not any(len(truth.boxes) for _, truth in photos):
        reasons = "; ".join(f"{s['annotation'] or s['file']}: {s['reason']}" for s in skipped[:3])
        raise EdgeCNNError(f"--data {annotations} holds no usable box of the model's labels {list(labels)} "
                           f"({len(skipped)} annotations skipped{': ' + reasons if reasons else ''}): "
                           "fix the annotations or pass another file")
    frames = []
    if negatives is not None:
        if not Path(negatives).is_dir():
            raise EdgeCNNError(f"--negatives {negatives} is not a folder: pass a folder of person-free images")
        background = read_negatives(negatives)
        skipped += background.skipped
        frames = [(image, Truth(image.boxes, np.zeros(0, dtype=np.int64), image.ignore, True))
                  for image in background.images]
        if not frames:
            raise EdgeCNNError(f"--negatives {negatives} holds no readable image: pass a folder of person-free images")
    return photos, frames, skipped


def _read_boxes(annotations: Path, labels: Sequence[str]):
    """The file's own category names (COCO categories, VOC names, YOLO classes.txt); YOLO labels without a
    classes.txt are read as the model's classes in order (class 0 its first label), as training wrote them."""
    try:
        return read_boxes(annotations)
    except EdgeCNNError as exc:
        if YOLO_CLASSES_FILE not in str(exc):
            raise
        return read_boxes(annotations, class_names=list(labels))


def score_model(name: str, kind: str, size: int | None, detect: Detector, photos, frames, labels: Sequence[str],
                threshold: float, batch_size: int = BATCH) -> ModelResult:
    """Run ``detect`` on every photo and frame (in batches, timed) and score it."""
    images = [image for image, _ in [*photos, *frames]]
    start = time.perf_counter()
    found: list[np.ndarray] = []
    for at in range(0, len(images), batch_size):
        found += [np.asarray(rows, dtype=np.float64).reshape(-1, 6)
                  for rows in detect([str(image.path) for image in images[at : at + batch_size]])]
    ms = 1000 * (time.perf_counter() - start) / max(len(images), 1)
    truth = [truth for _, truth in [*photos, *frames]]
    return ModelResult(name, kind, detection_metrics(truth, found, labels, threshold), curves(truth, found, labels),
                       ms, size, found)


def curves(truth: Sequence[Truth], found: Sequence[np.ndarray], labels: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per class, on the annotated photos at IoU 0.5: the precision-recall points and the miss rate
    against false positives per image, as ``detection_metrics`` scores them."""
    photos = [index for index, item in enumerate(truth) if not item.person_free]
    result = {}
    for index, label in enumerate(labels):
        detections = [found[i][found[i][:, 5] == index, :5] for i in photos]
        boxes = [truth[i].boxes[truth[i].classes == index] for i in photos]
        ignore = [truth[i].ignore[truth[i].classes == index] for i in photos]
        recall, precision = precision_recall_curve(detections, boxes, 0.5, ignore)
        fppi, miss = miss_rate_curve(detections, boxes, 0.5, ignore)
        result[label] = {"recall": recall, "precision": precision, "fppi": fppi, "miss_rate": miss}
    return result


def run_detectors(run: Path, labels: Sequence[str]) -> Iterable[tuple[str, str, int | None, Detector]]:
    """[("keras", "keras fp32", None, detect)]: the run's Keras model as training's evaluation runs it."""
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train.box_route import detect_images

    run_dir = RunDir(run).require("model", "preprocess")
    model, spec = load_keras_model(run_dir.model_path), run_dir.preprocess()

    def detect(paths: Sequence[str]) -> list[np.ndarray]:
        images = [BoxImage.empty(Path(path), 0, 0, "") for path in paths]
        return detect_images(model, images, spec, batch_size=len(images), threshold=EVAL_THRESHOLD)

    return [("keras", "keras fp32", None, detect)]


def export_detectors(export: Path, labels: Sequence[str]) -> Iterable[tuple[str, str, int | None, Detector]]:
    """One (path, kind, bytes, detect) per artifact of the export with a detection output that did not
    fail parity, each loaded on use."""
    from edge_cnn.formats import embedded_formats
    from edge_cnn.runtime import Predictor

    manifest = load_manifest(export)
    chosen = [artifact for artifact in manifest.artifacts
              if artifact.format in embedded_formats() and artifact.status != "FAILED"
              and any(output.meaning == MEANING for output in artifact.outputs)]
    if not chosen:
        raise EdgeCNNError(f"{export / MANIFEST_NAME} lists no artifact with a detection output that passed parity: "
                           "re-export the detect run with `edgecnn export RUN [--int8]`")
    index = {label: position for position, label in enumerate(labels)}
    for artifact in chosen:
        predictor = Predictor.load(manifest.artifact_path(artifact))

        def detect(paths: Sequence[str], predictor=predictor) -> list[np.ndarray]:
            return [np.array([[b["x"], b["y"], b["w"], b["h"], b["score"], index[b["label"]]] for b in boxes],
                             dtype=np.float64).reshape(-1, 6)
                    for boxes in predictor.detect(list(paths), threshold=EVAL_THRESHOLD)]

        yield artifact.path, predictor.kind, artifact.bytes, detect


def write_report(source: Path, annotations: Path, negatives: Path | None, labels: list[str], photos, frames,
                 skipped: list[dict[str, str]], threshold: float, models: list[ModelResult], out: Path) -> DetectionReport:
    """detection_report.json and the two plots in ``out``."""
    from edge_cnn.detect.curves import plot_miss_rate, plot_precision_recall
    from edge_cnn.machine import machine_info

    boxes = int(sum(len(truth.boxes) for _, truth in photos))
    report = {"protocol": "detect", "source": str(source), "annotations": str(annotations),
              "negatives": None if negatives is None else str(negatives), "labels": labels, "photos": len(photos),
              "person_free_frames": len(frames), "boxes": boxes, "threshold": threshold,
              "detections_kept_from": EVAL_THRESHOLD,
              "metrics": "AP@0.5 and AP@[.5:.95]: COCO 101-point interpolation (edge_cnn.box_metrics, not pycocotools); "
                         "miss rate: log-average over FPPI 1e-2..1 (Caltech); FP/frame at the threshold",
              "skipped": skipped, "machine": machine_info(), "models": [model.to_dict() for model in models]}
    report_json = write_json(out / REPORT_NAME, report)
    title = f"{source.resolve().parent.name}/{source.resolve().name}: {len(photos)} photos, {boxes} boxes"
    pr_png = plot_precision_recall(models, out / PR_NAME, title)
    mr_png = plot_miss_rate(models, out / MISS_RATE_NAME, title)
    return DetectionReport(source, annotations, negatives, labels, len(photos), len(frames), boxes, skipped, threshold,
                           models, report_json, pr_png, mr_png)
