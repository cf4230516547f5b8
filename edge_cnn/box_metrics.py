"""Box geometry and detection metrics for whole photos: IoU, greedy NMS, COCO average precision, the
pedestrian log-average miss rate (and the precision-recall and miss-rate-vs-FPPI curves behind them),
and false positives per person-free frame. Numpy only, so they run
wherever a detector runs; below every stage, so the sliding-window route, the ``detect`` task (its
decoding and its metrics.json) and the runtime share one IoU and one NMS.

Window accuracy says little about a detector on real photos; these are the numbers the detection
literature reports, computed the way its reference tools do, so ours can be compared with theirs.

Inputs, per image and aligned by index: ground-truth boxes (G, 4) as (x, y, w, h) pixels and
detections (D, 5) as (x, y, w, h, score). Optional ``ignore`` (per image, (G,) bool) marks boxes
(COCO ``iscrowd``, VOC ``difficult``; ``BoxImage.ignore``) that count neither as positives nor as misses.

Conventions:
  * matching, per image: detections in decreasing score order each take the unmatched, not ignored
    ground-truth box of highest IoU >= the threshold (a box is matched once; on equal IoU the first
    box, where COCO takes the last); a detection that finds none but overlaps an ignored box that much
    is dropped (neither true nor false); the rest are false positives. IoU is the plain one for ignored
    boxes too (COCO scores crowd boxes by intersection over the detection's area: not done here);
  * ``average_precision``: COCO's 101-point interpolated precision (recall 0, 0.01, .., 1; precision
    made non-increasing; 0 past the highest recall), detections of all images ranked together.
    COCO's area ranges and its 100-detections-per-image cap are not applied; ``ap_50_95`` is the mean
    over IoU 0.50, 0.55, .., 0.95;
  * ``log_average_miss_rate``: Dollar et al.'s (Caltech toolbox ``dbEval``): the miss rate at 9 FPPI
    values evenly spaced in log space over [1e-2, 1], each read at the operating point of largest FPPI
    not above it (miss rate 1 where none is), then their geometric mean (miss rates floored at 1e-10).
    FPPI is over every image given, person-free frames included;
  * with no ground-truth positives AP and miss rate are undefined: NaN.

NMS is greedy on (x, y, w, h) boxes (``nms``): the highest score first, every box overlapping it by
more than the threshold dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError

COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MISS_RATE_FPPI_POINTS = np.logspace(-2.0, 0.0, 9)
MISS_RATE_FLOOR = 1e-10

PerImage = Sequence[np.ndarray]  # one array per image, images aligned by index


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (N, 4) and (M, 4) (x, y, w, h) boxes (0 where both are empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    a_right, a_bottom = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    b_right, b_bottom = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter_w = np.clip(np.minimum(a_right[:, None], b_right[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0.0, None)
    inter_h = np.clip(np.minimum(a_bottom[:, None], b_bottom[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0.0, None)
    inter = inter_w * inter_h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _rows(array, columns: int, what: str, index: int) -> np.ndarray:
    rows = np.asarray(array, dtype=np.float64)
    if rows.size == 0:
        return rows.reshape(0, columns)
    if rows.ndim != 2 or rows.shape[1] != columns:
        raise EdgeCNNError(f"{what} of image {index} has shape {rows.shape}: pass {columns} values per box, one box per row")
    return rows


def match_detections(
    detections: PerImage, ground_truth: PerImage, iou_threshold: float = 0.5, ignore: PerImage | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, is_true_positive, positives): the detections not dropped on ignored boxes, in image
    order, and the number of ground-truth boxes not ignored (the module's matching rules)."""
    if len(detections) != len(ground_truth) or (ignore is not None and len(ignore) != len(ground_truth)):
        raise EdgeCNNError(
            f"{len(detections)} images of detections for {len(ground_truth)} of ground truth"
            + ("" if ignore is None else f" and {len(ignore)} of ignore flags")
            + ": pass one entry per image, in the same order"
        )
    scores, true, positives = [], [], 0
    for index, (found, truth) in enumerate(zip(detections, ground_truth)):
        found = _rows(found, 5, "detections", index)
        truth = _rows(truth, 4, "ground truth", index)
        ignored = np.zeros(len(truth), dtype=bool) if ignore is None else np.asarray(ignore[index], dtype=bool).reshape(-1)
        if len(ignored) != len(truth):
            raise EdgeCNNError(f"image {index} has {len(truth)} ground-truth boxes but {len(ignored)} ignore flags")
        positives += int((~ignored).sum())
        found = found[np.argsort(-found[:, 4], kind="stable")]
        overlaps = iou(found[:, :4], truth)
        taken = ignored.copy()
        for row, score in zip(overlaps, found[:, 4]):
            candidates = np.where(~taken & (row >= iou_threshold), row, -1.0)
            if candidates.size and candidates.max() >= 0.0:
                taken[int(np.argmax(candidates))] = True
                scores.append(score)
                true.append(True)
            elif not np.any(ignored & (row >= iou_threshold)):
                scores.append(score)
                true.append(False)
    return np.array(scores, dtype=np.float64), np.array(true, dtype=bool), positives


def _ranked_counts(detections: PerImage, ground_truth: PerImage, iou_threshold: float, ignore: PerImage | None):
    """Cumulative (true positives, false positives) down the matched detections ranked by score
    (ties in input order), and the number of positives."""
    scores, true, positives = match_detections(detections, ground_truth, iou_threshold, ignore)
    ranked = true[np.argsort(-scores, kind="stable")]
    return np.cumsum(ranked), np.cumsum(~ranked), positives


def average_precision(detections: PerImage, ground_truth: PerImage, iou: float = 0.5, ignore: PerImage | None = None) -> float:
    """COCO 101-point interpolated average precision at one IoU threshold (NaN without positives)."""
    tp, fp, positives = _ranked_counts(detections, ground_truth, iou, ignore)
    if positives == 0:
        return float("nan")
    precision = np.maximum.accumulate((tp / np.maximum(tp + fp, 1))[::-1])[::-1]
    at = np.searchsorted(tp / positives, COCO_RECALL_POINTS, side="left")  # first rank reaching each recall
    reached = at < len(precision)
    sampled = np.zeros(len(COCO_RECALL_POINTS))
    sampled[reached] = precision[at[reached]]
    return float(sampled.mean())


def ap_50_95(detections: PerImage, ground_truth: PerImage, ignore: PerImage | None = None) -> float:
    """COCO AP@[.50:.05:.95]: ``average_precision`` averaged over the ten IoU thresholds."""
    return float(np.mean([average_precision(detections, ground_truth, threshold, ignore) for threshold in COCO_IOU_THRESHOLDS]))


def log_average_miss_rate(detections: PerImage, ground_truth: PerImage, iou: float = 0.5, ignore: PerImage | None = None) -> float:
    """Dollar et al.'s log-average miss rate over FPPI [1e-2, 1] (lower is better; NaN without positives)."""
    tp, fp, positives = _ranked_counts(detections, ground_truth, iou, ignore)
    if positives == 0:
        return float("nan")
    fppi = fp / len(ground_truth)
    last = np.searchsorted(fppi, MISS_RATE_FPPI_POINTS, side="right") - 1  # largest FPPI <= each point
    recall = np.zeros(len(MISS_RATE_FPPI_POINTS))
    recall[last >= 0] = tp[last[last >= 0]] / positives
    return float(np.exp(np.mean(np.log(np.maximum(MISS_RATE_FLOOR, 1.0 - recall)))))


def precision_recall_curve(detections: PerImage, ground_truth: PerImage, iou: float = 0.5,
                           ignore: PerImage | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each ranked detection, the raw points that ``average_precision``
    interpolates: what a precision-recall plot draws (empty without positives or detections)."""
    tp, fp, positives = _ranked_counts(detections, ground_truth, iou, ignore)
    if positives == 0 or len(tp) == 0:
        return np.zeros(0), np.zeros(0)
    return tp / positives, tp / np.maximum(tp + fp, 1)


def miss_rate_curve(detections: PerImage, ground_truth: PerImage, iou: float = 0.5,
                    ignore: PerImage | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(false positives per image, miss rate) after each ranked detection: the Caltech curve that
    ``log_average_miss_rate`` samples (FPPI over every image given; empty without positives or detections)."""
    tp, fp, positives = _ranked_counts(detections, ground_truth, iou, ignore)
    if positives == 0 or len(tp) == 0:
        return np.zeros(0), np.zeros(0)
    return fp / len(ground_truth), 1.0 - tp / positives


def false_positives_per_frame(detections_on_person_free_frames: PerImage, threshold: float) -> float:
    """Detections scoring at least ``threshold`` per frame, on frames known to hold no person (every one is false)."""
    if len(detections_on_person_free_frames) == 0:
        raise EdgeCNNError("no person-free frames given: pass the detections of at least one frame")
    found = [_rows(frame, 5, "detections", index) for index, frame in enumerate(detections_on_person_free_frames)]
    return sum(int((frame[:, 4] >= threshold).sum()) for frame in found) / len(found)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression on (N, 4) [x, y, w, h] boxes; indices kept, best first."""
    if len(boxes) == 0:
        return []
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[iou(boxes[best:best + 1], boxes[rest])[0] <= iou_threshold]
    return keep
