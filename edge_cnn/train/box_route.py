"""The trainer's route for box-annotated photos (tasks whose ``data_kind`` is ``boxes``: detect).

``--data`` is a COCO JSON file, a folder of Pascal VOC XML or a YOLO folder (``edge_cnn.data.boxes``:
bad annotations are reported in data_report.json and skipped); ``--negatives`` a folder of person-free
photos. Photos and frames are split by photo with the seed (``split_by_photo``: a frame group never
meets a photo group), the frames of the training split train as pure background, those of val and test
give the false positives per person-free frame. The run directory is the classifier's, plus
``boxes.json`` (every image's boxes, classes, ignore flags and whether it is a person-free frame), which
a resumed run and later evaluations read back; ``splits/*.csv`` list the images with label -1 (no class).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_cnn.data.box_augment import BoxAugment
from edge_cnn.data.box_pipeline import BoxBatches, class_indices
from edge_cnn.data.boxes import BoxImage, negatives, read_boxes, split_by_photo
from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import write_json
from edge_cnn.preprocess import RESAMPLING, PreprocessSpec, to_pil
from edge_cnn.run_dir import SPLITS, RunDir
from edge_cnn.tasks import get_task
from edge_cnn.tasks.detect import EVAL_THRESHOLD, Truth, decode, letterbox, placement, stride_of
from edge_cnn.train.config import TrainConfig

BOXES_FILE = "boxes.json"
NO_CLASS = -1  # the label column of splits/*.csv for a photo: its classes are per box, in boxes.json
FRAME_GROUP = "person-free/"  # prefix of a frame's group, so a frame never shares a group with a photo


@dataclasses.dataclass
class BoxData:
    """What the trainer needs of the data: labels (categories), splits of photos, the spec, the skipped
    annotations, and which image paths are person-free frames."""

    classes: list[str]
    splits: dict[str, list[BoxImage]]
    spec: PreprocessSpec
    skipped: list[dict[str, str]]
    person_free: set[str]


class BoxRoute:
    """Prepare, read back, batch and evaluate box-annotated photos for one training run."""

    def __init__(self) -> None:
        self.train_batches: BoxBatches | None = None

    # --- the run's data ----------------------------------------------------------
    def prepare(self, config: TrainConfig, run: RunDir, spec: PreprocessSpec) -> BoxData:
        """Read, check and split the photos; write the run's contract files before any epoch."""
        annotations = read_boxes(config.data)
        if not annotations.categories or annotations.box_count == 0:
            reasons = "; ".join(f"{s['annotation'] or s['file']}: {s['reason']}" for s in annotations.skipped[:3])
            raise EdgeCNNError(f"--data {config.data} holds no usable box ({len(annotations.skipped)} annotations "
                               f"skipped{': ' + reasons if reasons else ''}): fix the annotations or pass another file")
        background = negatives(config.negatives) if config.negatives else None
        frames = [dataclasses.replace(frame, group=FRAME_GROUP + frame.group)
                  for frame in (background.images if background else [])]
        splits = split_by_photo([*annotations.images, *frames], val=config.val, test=config.test, seed=config.seed)
        if not splits["train"]:
            raise EdgeCNNError(f"--data {config.data}: the training split is empty (too few photos for --val and --test)")
        person_free = {str(frame.path) for frame in frames}
        skipped = annotations.skipped + (background.skipped if background else [])
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_labels(annotations.categories)
        spec.save(run.preprocess_path)
        for split in SPLITS:
            run.write_split(split, [(str(image.path), NO_CLASS) for image in splits[split]])
        write_json(run.path / BOXES_FILE, {"categories": annotations.categories,
                                            "images": [_image_record(image, person_free)
                                                       for split in SPLITS for image in splits[split]]})
        write_json(run.data_report_path, {
            "annotations": str(config.data), "negatives": config.negatives,
            "images": {split: len(splits[split]) for split in SPLITS},
            "boxes": {split: int(sum(len(image.boxes) for image in splits[split])) for split in SPLITS},
            "person_free_frames": {split: sum(str(i.path) in person_free for i in splits[split]) for split in SPLITS},
            "skipped": skipped, "clipped": annotations.clipped,
        })
        config.save(run.config_path)
        return BoxData(list(annotations.categories), splits, spec, list(skipped), person_free)

    def read_back(self, run: RunDir) -> BoxData:
        """The same splits as the interrupted run: splits/*.csv and boxes.json."""
        records = read_boxes_file(run)
        splits = {split: [records[str(Path(path).resolve())][0] for path, _ in run.read_split(split)] for split in SPLITS}
        report = json.loads(run.data_report_path.read_text()) if run.data_report_path.is_file() else {}
        person_free = {path for path, (_, free) in records.items() if free}
        return BoxData(run.labels(), splits, run.preprocess(), report.get("skipped", []), person_free)

    # --- training ----------------------------------------------------------------
    def datasets(self, config: TrainConfig, data: BoxData, model) -> tuple[Any, Any]:
        map_size = (int(model.output_shape[1]), int(model.output_shape[2]))
        stride = stride_of((data.spec.height, data.spec.width), map_size)
        augment = BoxAugment(zoom=float(config.zoom or 0.0), hflip=bool(config.hflip),
                             brightness=float(config.brightness or 0.0), contrast=float(config.contrast or 0.0),
                             grey=config.grey, blur=config.blur, downscale=config.downscale)
        self.train_batches = BoxBatches(data.splits["train"], data.classes, data.spec, map_size, stride,
                                        config.batch_size, training=True, augment=augment, seed=config.seed)
        val = data.splits["val"]
        val_ds = (BoxBatches(val, data.classes, data.spec, map_size, stride, config.batch_size).dataset()
                  if val else None)
        return self.train_batches.dataset(), val_ds

    def class_weight(self, config: TrainConfig, data: BoxData) -> None:
        """None: the focal loss balances the few positive cells against the background itself."""
        return None

    def skip_epochs(self, train_ds, epochs: int) -> None:
        """A resumed run draws the order and augmentation of epoch ``epochs`` + 1 next."""
        self.train_batches.epoch = int(epochs)

    # --- evaluation ----------------------------------------------------------------
    def evaluate(self, model, data: BoxData, config: TrainConfig) -> dict[str, Any]:
        """{split: the task's metrics} of ``model`` on each split, detections in original pixels."""
        task = get_task(config.task)
        results = {}
        for split, images in data.splits.items():
            found = detect_images(model, images, data.spec, config.batch_size)
            truth = [Truth(image.boxes, class_indices(image, data.classes), image.ignore,
                           str(image.path) in data.person_free) for image in images]
            results[split] = task.evaluate(truth, found, data.classes)
        return results

    def finish(self, run: RunDir, metrics: dict[str, Any], data: BoxData, shown: str) -> dict[str, Any]:
        """What metrics.json adds beside the splits: the split the terminal shows."""
        return {"summary_split": shown}


def detect_images(model, images: list[BoxImage], spec: PreprocessSpec, batch_size: int = 32,
                  threshold: float = EVAL_THRESHOLD) -> list[np.ndarray]:
    """(K, 6) detections (x, y, w, h, score, class) per image in its original pixels: letterboxed through
    the model, decoded and suppressed as the runtime does."""
    resample = RESAMPLING[spec.resize]
    found: list[np.ndarray] = []
    for start in range(0, len(images), max(1, int(batch_size))):
        chunk = [letterbox(to_pil(image.path), spec.height, spec.width, spec.color, resample)
                 for image in images[start : start + batch_size]]
        values = np.asarray(model(spec.normalize(np.stack([pixels for pixels, _ in chunk])), training=False))
        stride = stride_of((spec.height, spec.width), values.shape[1:3])
        for rows, (_, placed) in zip(decode(values, stride, threshold), chunk):
            rows[:, :4] = placed.to_original(rows[:, :4])
            found.append(rows)
    return found


def input_truths(run: RunDir) -> dict[str, Truth]:
    """Every image of a detection run by absolute path -> its ground truth with its place in the
    letterboxed input: what export scores its parity AP@0.5 against."""
    labels, spec = run.labels(), run.preprocess()
    return {path: Truth(image.boxes, class_indices(image, labels), image.ignore, free,
                        placement((image.width, image.height), spec.height, spec.width))
            for path, (image, free) in read_boxes_file(run).items()}


def _image_record(image: BoxImage, person_free: set[str]) -> dict[str, Any]:
    return {"path": str(Path(image.path).resolve()), "width": image.width, "height": image.height,
            "group": image.group, "boxes": image.boxes.tolist(), "labels": list(image.labels),
            "ignore": image.ignore.tolist(), "person_free": str(image.path) in person_free}


def read_boxes_file(run: RunDir) -> dict[str, tuple[BoxImage, bool]]:
    """boxes.json of a run: absolute path -> (the image, whether it is a person-free frame)."""
    file = run.path / BOXES_FILE
    try:
        data = json.loads(file.read_text())
        return {
            record["path"]: (BoxImage(Path(record["path"]), int(record["width"]), int(record["height"]),
                                      np.array(record["boxes"], dtype=np.float64).reshape(-1, 4), list(record["labels"]),
                                      str(record["group"]), np.array(record["ignore"], dtype=bool)),
                             bool(record["person_free"]))
            for record in data["images"]
        }
    except FileNotFoundError:
        raise EdgeCNNError(f"run directory {run.path} has no {BOXES_FILE}: it is not a detection run") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeCNNError(f"{file} is malformed ({type(exc).__name__}: {exc}): re-run `edgecnn train`") from None
