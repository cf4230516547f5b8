"""Object detection: a dense anchor-free head in the manner of FCOS (Tian et al. 2019), decoded and
suppressed in numpy, and scored by AP, log-average miss rate and false positives per person-free frame.

The model has one output, a map (N, H/s, W/s, C + 4) at the backbone's stride s (8 or 16): per cell, C
class scores (sigmoid: the cell lies in the centre region of an object of that class), then the box as
the distances l, t, r, b from the cell centre to the box's sides, in strides divided by ``box_scale`` (the
map's longer side), through a sigmoid so that they stay positive and inside the input. Scores and
distances thus share the range 0..1: a full-integer int8 export quantizes the one output tensor with
one scale, and raw distances of 20 strides would leave the scores a dozen int8 steps.

Boxes are (x, y, w, h) pixels throughout. Images reach the model letterboxed (aspect ratio kept, the
rest padded with grey, centred), so a box in input pixels maps back to the original photo by the
inverse of one scale and one offset (``Letterbox``). Layer names: ``det_conv1..3`` (+ BN, ReLU),
``det_scores``, ``det_boxes`` and ``detections``; every other layer belongs to the backbone.
Numpy at import: Keras is imported inside the methods that build the head or the loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
from PIL import Image

from edge_cnn.box_metrics import ap_50_95, average_precision, false_positives_per_frame, iou, log_average_miss_rate, nms
from edge_cnn.errors import EdgeCNNError
from edge_cnn.tasks import Task, register_task

BOX_CHANNELS = 4
DILATIONS = (1, 2, 4)  # the head's 3x3 convolutions: together they add 14 cells of receptive field
HEAD_LAYERS = tuple(f"det_{kind}{i}" for i in range(1, len(DILATIONS) + 1) for kind in ("conv", "bn", "relu")) + (
    "det_scores", "det_boxes", "detections")
CENTRE_RADIUS = 1.5  # positives: cells whose centre lies within this many strides of a box centre (FCOS)
PRIOR = 0.01  # initial score of every cell (RetinaNet's prior: the focal loss starts from few false alarms)
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
PAD_VALUE = 114  # the letterbox's grey (YOLO's)
SCORE_THRESHOLD = 0.5  # the default operating point (FP per frame, `edgecnn detect`)
EVAL_THRESHOLD = 0.05  # detections kept for AP and the miss-rate curve
NMS_IOU = 0.5
MAX_DETECTIONS = 100
MEANING = "box_map"
DECODING = "fcos-ltrb"


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """How an image of ``width`` x ``height`` sits in the model input of ``input_width`` x ``input_height``:
    scaled by ``scale``, shifted by ``pad_x``, ``pad_y``."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int
    input_width: int
    input_height: int

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) original-image (x, y, w, h) -> input pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * self.scale
        return boxes + np.array([self.pad_x, self.pad_y, 0.0, 0.0])

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) input-pixel (x, y, w, h) -> original-image pixels, clipped to the image."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        left = np.clip((boxes[:, 0] - self.pad_x) / self.scale, 0.0, self.width)
        top = np.clip((boxes[:, 1] - self.pad_y) / self.scale, 0.0, self.height)
        right = np.clip((boxes[:, 0] + boxes[:, 2] - self.pad_x) / self.scale, 0.0, self.width)
        bottom = np.clip((boxes[:, 1] + boxes[:, 3] - self.pad_y) / self.scale, 0.0, self.height)
        return np.stack([left, top, right - left, bottom - top], axis=1)


def placement(image_size: tuple[int, int], height: int, width: int) -> Letterbox:
    """Where ``letterbox`` puts an image of (width, height) ``image_size`` in a ``height`` x ``width`` input."""
    scale = min(width / image_size[0], height / image_size[1])
    new_w, new_h = max(1, round(image_size[0] * scale)), max(1, round(image_size[1] * scale))
    return Letterbox(new_w / image_size[0], float((width - new_w) // 2), float((height - new_h) // 2), *image_size,
                     width, height)


def letterbox(image: Image.Image, height: int, width: int, color: str = "rgb",
              resample: int = Image.BILINEAR) -> tuple[np.ndarray, Letterbox]:
    """A PIL image -> (uint8 (height, width, C) input, its ``Letterbox``): the whole image, aspect ratio
    kept, centred on grey. Stretching would make people fatter or thinner than any seen in training."""
    image = image.convert("RGB" if color == "rgb" else "L")
    box = placement(image.size, height, width)
    new_size = (round(image.width * box.scale), round(image.height * box.scale))
    canvas = Image.new(image.mode, (width, height), (PAD_VALUE,) * len(image.getbands()))
    canvas.paste(image.resize(new_size, resample) if new_size != image.size else image, (int(box.pad_x), int(box.pad_y)))
    array = np.asarray(canvas, dtype=np.uint8)
    return (array[:, :, None] if array.ndim == 2 else array), box


# --- targets and decoding ----------------------------------------------------------------------


def cell_centres(map_height: int, map_width: int, stride: float) -> tuple[np.ndarray, np.ndarray]:
    """(map_height, map_width) x and y of every cell centre, in input pixels."""
    xs = (np.arange(map_width) + 0.5) * stride
    ys = (np.arange(map_height) + 0.5) * stride
    return np.meshgrid(xs, ys)


def encode_targets(boxes: np.ndarray, classes: Sequence[int], map_size: tuple[int, int], stride: float,
                   num_classes: int) -> np.ndarray:
    """(x, y, w, h) input-pixel boxes of one image -> the (H, W, C + 4) target map.

    A cell is positive for a box when its centre lies inside the box and within ``CENTRE_RADIUS``
    strides of the box's centre (the cell holding the centre always is, so no box goes without one);
    a cell claimed by several boxes keeps the smallest (FCOS's rule). Positives get score 1 for the box's
    class and the box's distances in the output's units; every other value is 0."""
    map_h, map_w = map_size
    target = np.zeros((map_h, map_w, num_classes + BOX_CHANNELS), dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre_x, centre_y = cell_centres(map_h, map_w, stride)
    box_scale = float(max(map_h, map_w))
    for index in np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable"):  # largest first: smaller ones overwrite
        x, y, w, h = boxes[index]
        mid_x, mid_y = x + w / 2, y + h / 2
        inside = (centre_x > x) & (centre_x < x + w) & (centre_y > y) & (centre_y < y + h)
        near = (np.abs(centre_x - mid_x) <= CENTRE_RADIUS * stride) & (np.abs(centre_y - mid_y) <= CENTRE_RADIUS * stride)
        positive = inside & near
        row = min(map_h - 1, max(0, int(mid_y // stride)))
        col = min(map_w - 1, max(0, int(mid_x // stride)))
        positive[row, col] = True
        distances = np.stack([centre_x - x, centre_y - y, x + w - centre_x, y + h - centre_y], axis=-1)
        distances = np.clip(distances / stride / box_scale, 1e-3, 1.0 - 1e-3)
        target[positive] = 0.0
        target[positive, int(classes[index])] = 1.0
        target[positive, num_classes:] = distances[positive]
    return target


def decode(values: np.ndarray, stride: float, threshold: float = SCORE_THRESHOLD, iou_threshold: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS) -> list[np.ndarray]:
    """Output maps (N, H, W, C + 4) -> per image (K, 6) detections (x, y, w, h, score, class) in input
    pixels, best first: cells scoring at least ``threshold`` for a class, then NMS per class."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 4 or values.shape[-1] <= BOX_CHANNELS:
        raise EdgeCNNError(f"a detection output has shape (N, H, W, classes + 4); got {values.shape}: re-export the model")
    count, map_h, map_w, channels = values.shape
    classes = channels - BOX_CHANNELS
    centre_x, centre_y = cell_centres(map_h, map_w, stride)
    reach = stride * max(map_h, map_w)
    results = []
    for image in values:
        scores, distances = image[..., :classes], image[..., classes:] * reach
        boxes = np.stack([centre_x - distances[..., 0], centre_y - distances[..., 1],
                          distances[..., 0] + distances[..., 2], distances[..., 1] + distances[..., 3]], axis=-1)
        found = []
        for label in range(classes):
            hits = scores[..., label] >= threshold
            candidates, candidate_scores = boxes[hits], scores[..., label][hits]
            for keep in nms(candidates, candidate_scores, iou_threshold):
                found.append([*candidates[keep], candidate_scores[keep], label])
        rows = np.array(found, dtype=np.float64).reshape(-1, 6)
        results.append(rows[np.argsort(-rows[:, 4], kind="stable")][:max_detections])
    return results


def stride_of(input_size: tuple[int, int], map_size: tuple[int, int]) -> int:
    """The backbone's stride from the input and output map sizes (the decoding needs it)."""
    stride_h, stride_w = input_size[0] / map_size[0], input_size[1] / map_size[1]
    if stride_h != stride_w or stride_h != int(stride_h):
        raise EdgeCNNError(f"input {input_size[0]}x{input_size[1]} does not divide into the {map_size[0]}x{map_size[1]} "
                           "output map: use an input size that is a multiple of the backbone's stride (8 or 16)")
    return int(stride_h)


# --- metrics -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Truth:
    """One image's ground truth for ``Detect.evaluate``: boxes (G, 4) original pixels, class per box,
    ignore flag per box, whether the image is a person-free frame (scored by FP per frame only), and
    where it sits in the model input (``Detect.score`` needs it to map the model's boxes back)."""

    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    person_free: bool = False
    placement: Letterbox | None = None


def detection_metrics(truth: Sequence[Truth], detections: Sequence[np.ndarray], labels: Sequence[str],
                      threshold: float = SCORE_THRESHOLD) -> dict[str, Any]:
    """metrics.json of one split: AP@0.5, AP@[.5:.95] and log-average miss rate on the annotated photos
    (mean over classes), false positives per person-free frame at ``threshold``; None where undefined."""
    photos = [i for i, t in enumerate(truth) if not t.person_free]
    frames = [i for i, t in enumerate(truth) if t.person_free]
    per_class = {}
    for index, label in enumerate(labels):
        found = [detections[i][detections[i][:, 5] == index, :5] for i in photos]
        boxes = [truth[i].boxes[truth[i].classes == index] for i in photos]
        ignore = [truth[i].ignore[truth[i].classes == index] for i in photos]
        per_class[label] = {
            "boxes": int(sum(len(b) for b in boxes)),
            "ap_50": _number(average_precision(found, boxes, 0.5, ignore)) if photos else None,
            "ap_50_95": _number(ap_50_95(found, boxes, ignore)) if photos else None,
            "log_average_miss_rate": _number(log_average_miss_rate(found, boxes, 0.5, ignore)) if photos else None,
        }
    mean = {key: _mean([c[key] for c in per_class.values()]) for key in ("ap_50", "ap_50_95", "log_average_miss_rate")}
    fp = false_positives_per_frame([detections[i][:, :5] for i in frames], threshold) if frames else None
    return {
        "images": len(truth),
        "photos": len(photos),
        "person_free_frames": len(frames),
        "boxes": int(sum(len(truth[i].boxes) for i in photos)),
        **mean,
        "fp_per_frame": fp,
        "threshold": threshold,
        "per_class": per_class,
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def box_agreement(found: Sequence[np.ndarray], reference: Sequence[np.ndarray], iou_threshold: float = 0.5) -> float:
    """% of the reference detections that the other set has too (same class, IoU >= ``iou_threshold``);
    100 when the reference found nothing and neither did the other."""
    matched = total = 0
    for mine, theirs in zip(found, reference):
        total += len(theirs)
        for row in theirs:
            same = mine[mine[:, 5] == row[5]]
            matched += int(len(same) and iou(row[None, :4], same[:, :4]).max() >= iou_threshold)
    if total == 0:
        return 100.0 if all(len(mine) == 0 for mine in found) else 0.0
    return 100.0 * matched / total


class Detect(Task):
    name = "detect"
    model_suffix = "detector"
    head_layers = HEAD_LAYERS
    feature_layer = None  # a map per cell, no image-level vector: no --embedding export
    data_kind = "boxes"
    score_name = "AP@0.5"
    try_command = "edgecnn detect {export} IMAGE --out detections/"

    def build_head(self, features, num_outputs: int, *, dropout: float = 0.0, pooling: str = "avg"):
        """Three 3x3 Conv-BN-ReLU with dilations 1, 2, 4 (the receptive field a person needs at stride 8 or 16,
        at the cost of three convolutions), then 1x1 sigmoid scores and boxes, concatenated. ``dropout`` and
        ``pooling`` belong to image-level heads and are not used."""
        from edge_cnn.keras import keras, layers

        channels = int(min(96, max(32, int(features.shape[-1]))))
        x = features
        for index, dilation in enumerate(DILATIONS, start=1):
            x = layers.Conv2D(channels, 3, padding="same", dilation_rate=dilation, use_bias=False,
                              name=f"det_conv{index}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"det_bn{index}")(x)
            x = layers.ReLU(name=f"det_relu{index}")(x)
        prior = keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR))
        scores = layers.Conv2D(int(num_outputs), 1, activation="sigmoid", bias_initializer=prior, name="det_scores")(x)
        boxes = layers.Conv2D(BOX_CHANNELS, 1, activation="sigmoid", name="det_boxes")(x)
        return layers.Concatenate(name="detections")([scores, boxes])

    def loss(self, label_smoothing: float = 0.0):
        """Focal loss on the scores plus GIoU loss on the boxes of positive cells, each per positive cell."""
        from edge_cnn.keras import tf

        def detection_loss(target, output):
            classes = output.shape[-1] - BOX_CHANNELS
            score_target, score = target[..., :classes], tf.clip_by_value(output[..., :classes], 1e-6, 1 - 1e-6)
            positive = tf.cast(tf.reduce_max(score_target, axis=-1) > 0.5, output.dtype)
            positives = tf.maximum(tf.reduce_sum(positive), 1.0)
            hit = score_target * score + (1 - score_target) * (1 - score)
            alpha = score_target * FOCAL_ALPHA + (1 - score_target) * (1 - FOCAL_ALPHA)
            focal = -alpha * tf.pow(1 - hit, FOCAL_GAMMA) * tf.math.log(hit)
            giou = generalized_iou_tf(target[..., classes:], output[..., classes:])
            box_loss = tf.reduce_sum((1.0 - giou) * positive)
            return (tf.reduce_sum(focal) + box_loss) / positives

        return detection_loss

    def metrics(self) -> list[Any]:
        return []

    def evaluate(self, truth: Sequence[Truth], outputs: Sequence[np.ndarray], labels: Sequence[str]) -> dict[str, Any]:
        """``outputs``: per image (K, 6) detections in original pixels (``decode`` then ``Letterbox.to_original``)."""
        return detection_metrics(truth, outputs, labels)

    def output_meaning(self, ends_in_softmax: bool, logits: bool) -> str:
        return MEANING

    def classes_in_output(self, shape: Sequence[int]) -> int:
        return int(shape[-1]) - BOX_CHANNELS

    def decoding(self, input_size: tuple[int, int], output_shape: Sequence[int]) -> dict[str, Any]:
        map_size = (int(output_shape[1]), int(output_shape[2]))
        return {"kind": DECODING, "stride": stride_of(input_size, map_size), "box_scale": max(map_size),
                "letterbox": "centred, grey", "pad_value": PAD_VALUE, "score_threshold": SCORE_THRESHOLD,
                "nms_iou": NMS_IOU,
                "channels": "classes (sigmoid scores), then l, t, r, b from the cell centre in strides / box_scale"}

    def model_inputs(self, spec, images: Sequence[Any]) -> np.ndarray:
        """Letterboxed, normalized, in the model's layout (export's calibration and parity images)."""
        from edge_cnn.preprocess import RESAMPLING, to_pil

        pixels = np.stack([letterbox(to_pil(image), spec.height, spec.width, spec.color, RESAMPLING[spec.resize])[0]
                           for image in images])
        return spec.to_layout(spec.normalize(pixels))

    def score(self, outputs: np.ndarray, truth: Sequence[Truth] | None) -> float | None:
        """AP@0.5 (%) on the annotated images of ``truth`` (each with its ``placement``), decoded and mapped
        back to the images' pixels as training's evaluation does, so Keras' figure is metrics.json's."""
        if truth is None:
            return None
        found = decode(outputs, stride_of((truth[0].placement.input_height, truth[0].placement.input_width),
                                          outputs.shape[1:3]), EVAL_THRESHOLD)
        for rows, image in zip(found, truth):
            rows[:, :4] = image.placement.to_original(rows[:, :4])
        labels = [str(index) for index in range(outputs.shape[-1] - BOX_CHANNELS)]
        ap = detection_metrics(truth, found, labels)["ap_50"]
        return None if ap is None else 100.0 * ap

    def parity(self, outputs: np.ndarray, reference: np.ndarray, truth: Sequence[Truth] | None) -> dict[str, Any]:
        """AP@0.5 (with ``truth``), the raw maps' largest difference, and how many of the reference's boxes
        (decoded at the default threshold) the artifact also finds."""
        return {
            "accuracy": self.score(outputs, truth),
            "agreement": box_agreement(decode(outputs, 1.0), decode(reference, 1.0)),
            "max_abs_diff": float(np.max(np.abs(outputs - reference))) if outputs.size else 0.0,
        }

    def summary(self, split_metrics: dict[str, Any]) -> dict[str, Any]:
        return {"images": split_metrics["images"], "AP@0.5": split_metrics["ap_50"],
                "AP@[.5:.95]": split_metrics["ap_50_95"], "miss rate": split_metrics["log_average_miss_rate"],
                "FP/frame": split_metrics["fp_per_frame"]}

    def postprocess(self, values: np.ndarray, meaning: str, labels: Sequence[str], topk: int,
                    paths: Sequence[str | None], **options: Any) -> list[list[dict[str, Any]]]:
        """Per image, its detections as dicts (x, y, w, h, score, label) in original pixels: ``options`` are
        ``decoding`` (the manifest's), ``letterboxes`` (one per image) and optionally ``threshold`` and
        ``iou_threshold``; ``topk`` caps the detections per image."""
        decoding = options["decoding"]
        found = decode(values, float(decoding["stride"]), float(options.get("threshold", decoding["score_threshold"])),
                       float(options.get("iou_threshold", decoding["nms_iou"])), max(1, int(topk)))
        answers = []
        for rows, box in zip(found, options["letterboxes"]):
            original = box.to_original(rows[:, :4])
            answers.append([
                {"x": float(x), "y": float(y), "w": float(w), "h": float(h), "score": float(row[4]),
                 "label": labels[int(row[5])]}
                for (x, y, w, h), row in zip(original, rows) if w > 0 and h > 0
            ])
        return answers


def generalized_iou_tf(target, output):
    """GIoU (Rezatofighi et al. 2019) of boxes given as l, t, r, b distances from the same cell centre (tf)."""
    from edge_cnn.keras import tf

    t_l, t_t, t_r, t_b = tf.unstack(target, axis=-1)
    o_l, o_t, o_r, o_b = tf.unstack(output, axis=-1)
    target_area = (t_l + t_r) * (t_t + t_b)
    output_area = (o_l + o_r) * (o_t + o_b)
    inter = (tf.minimum(t_l, o_l) + tf.minimum(t_r, o_r)) * (tf.minimum(t_t, o_t) + tf.minimum(t_b, o_b))
    union = target_area + output_area - inter
    enclosing = (tf.maximum(t_l, o_l) + tf.maximum(t_r, o_r)) * (tf.maximum(t_t, o_t) + tf.maximum(t_b, o_b))
    return inter / tf.maximum(union, 1e-9) - (enclosing - union) / tf.maximum(enclosing, 1e-9)


register_task(Detect())
