"""Box-annotated photos (COCO JSON, Pascal VOC XML, YOLO txt) for training and scoring detectors.

A detector is judged on whole photos, not on cut-out windows, so it needs the photos' boxes read
the same way whatever tool wrote them: every reader gives ``BoxImage``s with boxes in pixels as
(x, y, w, h), x and y the top-left corner. Annotation files are written by hand or by many tools,
so a bad annotation is reported in ``BoxDataset.skipped`` (file, annotation, reason) and skipped,
never a crash; only a file that cannot be read at all (a COCO file that is not JSON) is an
``EdgeCNNError``. Sizes are read from the image headers (Pillow, no decoding).

Box rules, the same for every format:
  * a box partly outside its image is clipped to the image and listed in ``BoxDataset.clipped``;
  * a box wholly outside it (no overlap left after clipping) is skipped;
  * a box of zero or negative width or height, or a non-finite coordinate, is skipped;
  * COCO ``iscrowd`` and VOC ``difficult`` boxes are kept and flagged in ``BoxImage.ignore``
    (evaluation neither rewards nor penalises detections on them).

The group of a photo is its file name without the suffix (relative to the images folder), the id the
64x128 window sets cut from the same photos carry (``pennfudan_<photo>_<k>.png``): splitting by it keeps
a photo, and every window cut from it, on one side only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_cnn.data.splits import split_items
from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.preprocess import check_pixels, find_images

YOLO_CLASSES_FILE = "classes.txt"
# One annotated object: box (x, y, w, h) pixels, label, ignore flag, where it is written (for reports).
Object = tuple[Sequence[float], str, bool, str]
FORMATS_HINT = "pass a COCO .json file, a folder of Pascal VOC .xml files, or a folder of images with YOLO .txt labels"


@dataclasses.dataclass(frozen=True, eq=False)
class BoxImage:
    """One photo: its file, size in pixels, boxes (N, 4) float64 (x, y, w, h), a label per box,
    the photo's group id and, per box, whether evaluation ignores it (crowd / difficult)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: list[str]
    group: str
    ignore: np.ndarray

    @classmethod
    def empty(cls, path: Path, width: int, height: int, group: str) -> "BoxImage":
        return cls(path, width, height, np.zeros((0, 4)), [], group, np.zeros(0, dtype=bool))


@dataclasses.dataclass
class BoxDataset:
    """Photos, category names, and the annotations skipped or clipped (dicts: file, annotation, reason)."""

    images: list[BoxImage]
    categories: list[str]
    skipped: list[dict[str, str]]
    clipped: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def box_count(self) -> int:
        return sum(len(image.boxes) for image in self.images)


class _Collector:
    """Gathers the photos of one reading and what was skipped or clipped on the way."""

    def __init__(self) -> None:
        self.images: list[BoxImage] = []
        self.skipped: list[dict[str, str]] = []
        self.clipped: list[dict[str, str]] = []

    def skip(self, file: Any, annotation: Any, reason: str) -> None:
        self.skipped.append({"file": str(file), "annotation": str(annotation), "reason": reason})

    def image_size(self, path: Path, annotation: str = "") -> tuple[int, int] | None:
        """(width, height) from the header, or None (reported) when the file is missing or unreadable."""
        if not path.is_file():
            self.skip(path, annotation, "image file is missing: add it or remove its annotations")
            return None
        try:
            with Image.open(path) as image:
                width, height = image.size
            check_pixels(path, width, height)
        except ImageError as exc:
            self.skip(path, annotation, str(exc))
            return None
        except (UnidentifiedImageError, OSError) as exc:
            self.skip(path, annotation, f"image cannot be read ({exc})")
            return None
        return width, height

    def add(self, path: Path, size: tuple[int, int], group: str, objects: list[Object], source: Path) -> None:
        """Add a photo with its objects (box x, y, w, h; label; ignore flag; where in ``source``, the
        annotation file, it was written), clipping or skipping boxes by the module's rules."""
        width, height = size
        boxes, labels, ignore = [], [], []
        for box, label, flagged, where in objects:
            fitted = self._fit(source, where, box, width, height)
            if fitted is not None:
                boxes.append(fitted)
                labels.append(label)
                ignore.append(flagged)
        as_array = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        self.images.append(BoxImage(path, width, height, as_array, labels, group, np.array(ignore, dtype=bool)))

    def _fit(self, source: Path, where: str, box: Sequence[float], width: int, height: int) -> tuple[float, ...] | None:
        x, y, w, h = box
        shown = f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g})"
        if not all(math.isfinite(v) for v in box):
            self.skip(source, where, f"{shown} has a non-finite coordinate")
            return None
        if w <= 0 or h <= 0:
            self.skip(source, where, f"{shown} has zero or negative size")
            return None
        left, top, right, bottom = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
        if right <= left or bottom <= top:
            self.skip(source, where, f"{shown} lies outside the {width}x{height} image")
            return None
        fitted = (left, top, right - left, bottom - top)
        if fitted != (x, y, w, h):
            self.clipped.append({"file": str(source), "annotation": where, "reason": f"{shown} clipped to the {width}x{height} image"})
        return fitted

    def dataset(self, categories: list[str]) -> BoxDataset:
        return BoxDataset(self.images, categories, self.skipped, self.clipped)


def _group(path: Path, root: Path) -> str:
    relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return relative.with_suffix("").as_posix()


def _numbers(values: Any, count: int) -> list[float] | None:
    """A list of ``count`` numbers as floats (non-finite ones kept, for the box rules to report), else None."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def _check_size(collector: _Collector, path: Path, written: tuple[Any, Any], actual: tuple[int, int], where: str) -> bool:
    """False (reported) when the annotation's image size contradicts the file: its boxes may be for another scale."""
    if all(v is None for v in written):
        return True
    try:
        width, height = (int(float(v)) for v in written)
    except (TypeError, ValueError):
        collector.skip(path, where, f"image size {written[0]}x{written[1]} is not a number of pixels")
        return False
    if (width, height) != tuple(actual):
        collector.skip(
            path,
            where,
            f"annotated size {width}x{height} differs from the file's {actual[0]}x{actual[1]}: re-annotate or restore the original image",
        )
        return False
    return True


# --- COCO ------------------------------------------------------------------------------------


def read_coco(json_path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> BoxDataset:
    """COCO detection JSON (``images``, ``annotations``, ``categories``; bbox [x, y, w, h] in pixels).

    Images are looked up under ``images_root``; by default under ``images/`` beside the JSON file if
    that folder exists, else beside the file. Images without annotations are kept with no boxes.
    """
    json_path = Path(json_path)
    data = _load_json(json_path)
    if images_root is None:
        images_root = json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
    images_root = Path(images_root)
    collector = _Collector()
    categories = {key: entry["name"] for key, entry in _coco_table(data, "categories", "category", "name", json_path, collector).items()}
    entries = _coco_table(data, "images", "image", "file_name", json_path, collector)
    objects: dict[Any, list[Object]] = {image_id: [] for image_id in entries}
    for index, annotation in enumerate(data["annotations"]):
        where = f"annotation id {annotation['id']}" if isinstance(annotation, dict) and "id" in annotation else f"annotation #{index}"
        reason = _coco_problem(annotation, objects, categories)
        if reason:
            collector.skip(json_path, where, reason)
            continue
        box = _numbers(annotation["bbox"], 4)
        objects[annotation["image_id"]].append((box, categories[annotation["category_id"]], bool(annotation.get("iscrowd", 0)), where))
    for image_id, entry in entries.items():
        path = images_root / entry["file_name"]
        where = f"image id {image_id}"
        size = collector.image_size(path, where)
        if size is not None and _check_size(collector, path, (entry.get("width"), entry.get("height")), size, where):
            collector.add(path, size, _group(path, images_root), objects[image_id], json_path)
    return collector.dataset(list(categories.values()))


def _load_json(json_path: Path) -> dict:
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgeCNNError(f"annotation file {json_path} does not exist: pass the path of a COCO .json file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeCNNError(f"annotation file {json_path} cannot be read ({exc}): check its permissions and encoding (UTF-8)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeCNNError(
            f"annotation file {json_path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): fix it or export it again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EdgeCNNError(f"annotation file {json_path} is not COCO JSON (no 'images' list): export it in COCO detection format")
    for key in ("annotations", "categories"):
        data.setdefault(key, [])
        if not isinstance(data[key], list):
            raise EdgeCNNError(f"annotation file {json_path} has '{key}' that is not a list: export it in COCO detection format")
    return data


def _coco_table(data: dict, key: str, kind: str, text_field: str, json_path: Path, collector: _Collector) -> dict[Any, dict]:
    """The entries of ``data[key]`` by id; one without an id (a number or a string) or a string
    ``text_field``, or repeating an earlier id, is reported and left out."""
    table: dict[Any, dict] = {}
    for index, entry in enumerate(data[key]):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not isinstance(entry.get(text_field), str):
            collector.skip(json_path, f"{kind} #{index}", f"{kind} entry needs an 'id' (a number or a string) and a '{text_field}'")
        elif entry["id"] in table:
            collector.skip(json_path, f"{kind} id {entry['id']}", f"{kind} id is used twice: the first is kept")
        else:
            table[entry["id"]] = entry
    return table


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _coco_problem(annotation: Any, objects: dict, categories: dict) -> str | None:
    if not isinstance(annotation, dict):
        return "annotation is not an object"
    if not _is_id(annotation.get("image_id")) or annotation["image_id"] not in objects:
        return f"image_id {annotation.get('image_id')!r} names no image in 'images'"
    if not _is_id(annotation.get("category_id")) or annotation["category_id"] not in categories:
        return f"category_id {annotation.get('category_id')!r} names no category in 'categories'"
    if _numbers(annotation.get("bbox"), 4) is None:
        return f"bbox {annotation.get('bbox')!r} is not four numbers [x, y, w, h]"
    return None


# --- Pascal VOC ------------------------------------------------------------------------------


def read_voc(
    folder: str | os.PathLike, images_folder: str | os.PathLike | None = None, class_names: Sequence[str] | None = None
) -> BoxDataset:
    """Pascal VOC XML files under ``folder`` (``<filename>``, ``<size>``, ``<object><name><bndbox>``).

    VOC corners are 1-based inclusive pixels: x = xmin - 1, w = xmax - xmin + 1. The image is looked
    up in ``images_folder`` if given, else beside the XML file, else in a sibling ``JPEGImages``
    folder (the VOCdevkit layout). With ``class_names`` other object names are skipped as unknown;
    without, the categories are the names found, sorted.
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.xml")) if folder.is_dir() else []
    if not files:
        raise EdgeCNNError(f"{folder} holds no Pascal VOC .xml files: {FORMATS_HINT}")
    collector = _Collector()
    found: set[str] = set()
    for xml_path in files:
        parsed = _voc_file(xml_path, collector)
        if parsed is None:
            continue
        file_name, written, objects = parsed
        known = [item for item in objects if class_names is None or item[1] in class_names]
        for _, name, _, where in objects:
            if class_names is not None and name not in class_names:
                collector.skip(xml_path, where, f"class {name!r} is not one of {list(class_names)}")
        found.update(name for _, name, _, _ in known)
        path = _voc_image(xml_path, file_name, images_folder)
        size = collector.image_size(path, str(xml_path))
        if size is not None and _check_size(collector, path, written, size, str(xml_path)):
            collector.add(path, size, _group(path, path.parent), known, xml_path)
    return collector.dataset(list(class_names) if class_names is not None else sorted(found))


def _voc_image(xml_path: Path, file_name: str, images_folder: str | os.PathLike | None) -> Path:
    if images_folder is not None:
        return Path(images_folder) / file_name
    beside = xml_path.parent / file_name
    return beside if beside.exists() else xml_path.parent.parent / "JPEGImages" / file_name


def _voc_file(xml_path: Path, collector: _Collector) -> tuple[str, tuple[Any, Any], list[Object]] | None:
    """(image file name, annotated (width, height), objects) or None (reported)."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        collector.skip(xml_path, "", f"not readable XML ({exc}): fix or re-export the file")
        return None
    file_name = (root.findtext("filename") or "").strip()
    if not file_name:
        collector.skip(xml_path, "", "no <filename>: the annotation names no image")
        return None
    size = root.find("size")
    written = (None, None) if size is None else (size.findtext("width"), size.findtext("height"))
    objects = []
    for index, element in enumerate(root.iter("object")):
        where = f"object #{index + 1}"
        name = (element.findtext("name") or "").strip()
        corners = _voc_corners(element.find("bndbox"))
        if not name or corners is None:
            collector.skip(xml_path, where, "object needs a <name> and a <bndbox> with numeric xmin, ymin, xmax, ymax")
            continue
        xmin, ymin, xmax, ymax = corners
        difficult = (element.findtext("difficult") or "0").strip() == "1"
        objects.append(((xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0), name, difficult, where))
    return file_name, written, objects


def _voc_corners(box: ElementTree.Element | None) -> tuple[float, ...] | None:
    if box is None:
        return None
    try:
        return tuple(float(box.findtext(tag) or "") for tag in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        return None


# --- YOLO ------------------------------------------------------------------------------------


def read_yolo(
    images_folder: str | os.PathLike, labels_folder: str | os.PathLike | None = None, class_names: Sequence[str] | None = None
) -> BoxDataset:
    """YOLO labels: one ``class cx cy w h`` line per box (centre and size as fractions of the image).

    The label of ``images_folder/a/b.jpg`` is ``labels_folder/a/b.txt``; without ``labels_folder``,
    ``b.txt`` beside the image, else the YOLO layout's (``.../images/a/b.jpg`` -> ``.../labels/a/b.txt``).
    An image without a label file has no boxes (YOLO's background images). ``class_names`` defaults to
    the lines of ``classes.txt`` in the labels folder or the images folder.
    """
    images_folder = Path(images_folder)
    labels_root = Path(labels_folder) if labels_folder is not None else None
    images = find_images(images_folder, "images folder")
    names = list(class_names) if class_names is not None else _yolo_class_names(images_folder, labels_root)
    collector = _Collector()
    used: set[Path] = set()
    for path in images:
        label = _yolo_label(path, images_folder, labels_root)
        if label is not None:
            used.add(label)
        size = collector.image_size(path)
        if size is None:
            continue
        objects = _yolo_objects(label, size, names, collector) if label is not None else []
        collector.add(path, size, _group(path, images_folder), objects, label or path)
    for label in _yolo_label_files(images_folder, labels_root) - used:
        collector.skip(label, "", "no image has this label file's name: add the image or remove the label")
    return collector.dataset(names)


def _yolo_label(image: Path, images_folder: Path, labels_root: Path | None) -> Path | None:
    if labels_root is not None:
        candidate = labels_root / image.relative_to(images_folder).with_suffix(".txt")
        return candidate if candidate.is_file() else None
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(image.with_suffix(".txt").parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
        candidate = Path(*parts)
        return candidate if candidate.is_file() else None
    return None


def _yolo_labels_dir(images_folder: Path, labels_root: Path | None) -> Path | None:
    """The folder holding labels apart from the images, if any (given, or the YOLO ``labels`` sibling)."""
    if labels_root is not None:
        return labels_root
    sibling = images_folder.parent / "labels"
    return sibling if images_folder.name == "images" and sibling.is_dir() else None


def _yolo_label_files(images_folder: Path, labels_root: Path | None) -> set[Path]:
    folders = [images_folder] + [f for f in [_yolo_labels_dir(images_folder, labels_root)] if f is not None]
    return {p for folder in folders for p in folder.rglob("*.txt") if p.name != YOLO_CLASSES_FILE}


def _yolo_class_names(images_folder: Path, labels_root: Path | None) -> list[str]:
    for folder in (_yolo_labels_dir(images_folder, labels_root), images_folder, images_folder.parent):
        if folder is not None and (folder / YOLO_CLASSES_FILE).is_file():
            lines = (folder / YOLO_CLASSES_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
            return [line.strip() for line in lines if line.strip()]
    raise EdgeCNNError(
        f"YOLO labels for {images_folder} need class names: write {YOLO_CLASSES_FILE} (one name per line, class 0 first) "
        "beside the labels or pass class_names"
    )


def _yolo_objects(label: Path, size: tuple[int, int], names: list[str], collector: _Collector) -> list[Object]:
    width, height = size
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        collector.skip(label, "", f"label file cannot be read ({exc})")
        return []
    objects = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        fields = line.split()
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except (ValueError, IndexError):
            collector.skip(label, where, f"{line.strip()!r} is not 'class cx cy w h' (an integer then four numbers)")
            continue
        if not 0 <= index < len(names):
            collector.skip(label, where, f"class {index} is not in 0..{len(names) - 1} ({', '.join(names)})")
            continue
        box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
        objects.append((box, names[index], False, where))
    return objects


# --- any format, negatives, splits -------------------------------------------------------------


def read_boxes(path: str | os.PathLike, class_names: Sequence[str] | None = None) -> BoxDataset:
    """A .json file -> COCO; a folder holding .xml files -> Pascal VOC; a folder of images with
    .txt labels (beside them or in the YOLO ``labels`` sibling) -> YOLO."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_coco(path)
    if path.is_dir():
        if next(path.rglob("*.xml"), None) is not None:
            return read_voc(path, class_names=class_names)
        if _yolo_label_files(path, None):
            return read_yolo(path, class_names=class_names)
    raise EdgeCNNError(f"{path} holds no box annotations that can be read: {FORMATS_HINT}")


def negatives(folder: str | os.PathLike) -> BoxDataset:
    """Person-free photos: every image under ``folder`` with no boxes (unreadable ones reported in ``skipped``)."""
    folder = Path(folder)
    collector = _Collector()
    for path in find_images(folder, "person-free folder"):
        size = collector.image_size(path)
        if size is not None:
            collector.images.append(BoxImage.empty(path, size[0], size[1], _group(path, folder)))
    return collector.dataset([])


def split_by_photo(images: Sequence[BoxImage], val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, list[BoxImage]]:
    """{"train", "val", "test"} -> photos, whole groups on one side only, seeded and reproducible.

    Groups are shuffled and cut by ``edge_cnn.data.splits.split_items``, stratified by whether they
    hold boxes, so person-free photos are spread over the splits like annotated ones.
    """
    members: dict[str, list[BoxImage]] = {}
    for image in images:
        members.setdefault(image.group, []).append(image)
    groups = [(group, int(any(len(image.boxes) for image in photos))) for group, photos in sorted(members.items())]
    splits = split_items(groups, val=val, test=test, seed=seed, classes=["person-free", "with boxes"])
    return {split: [image for group, _ in chosen for image in members[group]] for split, chosen in splits.items()}
