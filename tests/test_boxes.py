"""Box-annotated data sets: COCO, VOC and YOLO readers, bad annotations skipped, photo splits."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_cnn.data.boxes import BoxImage, negatives, read_boxes, read_coco, read_voc, read_yolo, split_by_photo
from edge_cnn.errors import EdgeCNNError


def image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 90, 90)).save(path)
    return path


def coco(tmp_path: Path, annotations: list, images: list | None = None) -> Path:
    """A COCO file beside images/a.png (40x30) with category 1 = person and the given annotations."""
    image(tmp_path / "images" / "a.png", 40, 30)
    data = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def assert_skipped(data, expected: dict[tuple[str, str], str]) -> None:
    """Exactly the ``expected`` (file name, annotation) entries were skipped, each reason holding its phrase."""
    reasons = {(Path(entry["file"]).name, entry["annotation"]): entry["reason"] for entry in data.skipped}
    assert len(data.skipped) == len(expected) and set(reasons) == set(expected), data.skipped
    for key, phrase in expected.items():
        assert phrase in reasons[key], (key, reasons[key])


GOOD = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 4, 10, 20], "iscrowd": 0}


def test_coco_reads_boxes_labels_sizes_and_flags_crowds(tmp_path):
    crowd = {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 15, 10], "iscrowd": 1}
    data = read_coco(coco(tmp_path, [GOOD, crowd]))
    assert data.categories == ["person"]
    assert data.skipped == [] and data.clipped == []
    (photo,) = data.images
    assert (photo.path, photo.width, photo.height, photo.group) == (tmp_path / "images" / "a.png", 40, 30, "a")
    np.testing.assert_array_equal(photo.boxes, [[5, 4, 10, 20], [20, 0, 15, 10]])
    assert photo.labels == ["person", "person"]
    np.testing.assert_array_equal(photo.ignore, [False, True])
    assert data.box_count == 2


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"id": 9, "image_id": 1, "category_id": 1, "bbox": [50, 40, 5, 5]}, "lies outside the 40x30 image"),
        ({"id": 9, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 5]}, "zero or negative size"),
        ({"id": 9, "image_id": 1, "category_id": 1, "bbox": [5, 5, 4, -2]}, "zero or negative size"),
        ({"id": 9, "image_id": 1, "category_id": 7, "bbox": [5, 5, 4, 4]}, "category_id 7 names no category"),
        ({"id": 9, "image_id": 42, "category_id": 1, "bbox": [5, 5, 4, 4]}, "image_id 42 names no image"),
        ({"id": 9, "image_id": [1], "category_id": 1, "bbox": [5, 5, 4, 4]}, "names no image"),
        ({"id": 9, "image_id": 1, "category_id": 1, "bbox": [5, "x", 4, 4]}, "is not four numbers"),
        ({"id": 9, "image_id": 1, "category_id": 1}, "is not four numbers"),
        ({"id": 9, "image_id": 1, "category_id": 1, "bbox": [float("nan"), 5, 4, 4]}, "non-finite coordinate"),
        ("not an object", "is not an object"),
    ],
)
def test_coco_bad_annotation_is_reported_and_skipped(tmp_path, bad, reason):
    data = read_coco(coco(tmp_path, [GOOD, bad]))
    assert len(data.skipped) == 1, data.skipped
    assert data.skipped[0]["annotation"] == ("annotation id 9" if isinstance(bad, dict) else "annotation #1")
    assert reason in data.skipped[0]["reason"]
    np.testing.assert_array_equal(data.images[0].boxes, [GOOD["bbox"]])


def test_coco_clips_a_box_partly_outside_and_reports_it(tmp_path):
    partly = {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-5, 20, 20, 20]}
    data = read_coco(coco(tmp_path, [partly]))
    np.testing.assert_array_equal(data.images[0].boxes, [[0, 20, 15, 10]])
    assert data.skipped == []
    assert [entry["annotation"] for entry in data.clipped] == ["annotation id 3"]


def test_coco_skips_missing_images_bad_entries_and_wrong_sizes(tmp_path):
    image(tmp_path / "images" / "b.png", 20, 20)
    entries = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "gone.png", "width": 40, "height": 30},
        {"id": 3, "file_name": "b.png", "width": 40, "height": 40},
        {"file_name": "no_id.png"},
        {"id": 1, "file_name": "again.png"},
    ]
    lost = {"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}
    data = read_coco(coco(tmp_path, [GOOD, lost], images=entries))
    assert [photo.path.name for photo in data.images] == ["a.png"]
    assert_skipped(
        data,
        {
            ("gone.png", "image id 2"): "image file is missing",
            ("b.png", "image id 3"): "differs from the file's 20x20",
            ("annotations.json", "image #3"): "needs an 'id'",
            ("annotations.json", "image id 1"): "used twice",
        },
    )


def test_unreadable_coco_is_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n{"id": 1,, }')
    with pytest.raises(EdgeCNNError, match="broken.json is not valid JSON") as error:
        read_coco(path)
    assert "\n" not in str(error.value) and "line 2" in str(error.value)
    path.write_text("[1, 2]")
    with pytest.raises(EdgeCNNError, match="is not COCO JSON"):
        read_coco(path)
    path.write_text('{"images": [], "annotations": 3}')
    with pytest.raises(EdgeCNNError, match="'annotations' that is not a list"):
        read_coco(path)
    with pytest.raises(EdgeCNNError, match="does not exist"):
        read_coco(tmp_path / "absent.json")


def voc_xml(path: Path, file_name: str, objects: str, size: str = "<size><width>40</width><height>30</height></size>") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{file_name}</filename>{size}{objects}</annotation>")
    return path


def voc_object(name: str, corners: tuple, difficult: int = 0) -> str:
    box = "".join(f"<{tag}>{value}</{tag}>" for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{box}</bndbox></object>"


def test_voc_reads_inclusive_corners_and_skips_bad_objects(tmp_path):
    image(tmp_path / "a.png", 40, 30)
    objects = (
        voc_object("person", (11, 6, 20, 25))
        + voc_object("person", (1, 1, 5, 5), difficult=1)
        + voc_object("car", (1, 1, 5, 5))
        + "<object><name>person</name></object>"
        + voc_object("person", (30, 10, 29, 20))
    )
    voc_xml(tmp_path / "a.xml", "a.png", objects)
    voc_xml(tmp_path / "gone.xml", "gone.png", voc_object("person", (1, 1, 5, 5)))
    (tmp_path / "broken.xml").write_text("<annotation><filename>a.png")
    data = read_voc(tmp_path, class_names=["person"])
    (photo,) = data.images
    np.testing.assert_array_equal(photo.boxes, [[10, 5, 10, 20], [0, 0, 5, 5]])
    np.testing.assert_array_equal(photo.ignore, [False, True])
    assert data.categories == ["person"]
    assert_skipped(
        data,
        {
            ("a.xml", "object #3"): "class 'car' is not one of ['person']",
            ("a.xml", "object #4"): "needs a <name> and a <bndbox>",
            ("a.xml", "object #5"): "zero or negative size",
            ("broken.xml", ""): "not readable XML",
            ("gone.png", str(tmp_path / "gone.xml")): "image file is missing",
        },
    )


def test_voc_finds_images_in_the_vocdevkit_layout_and_names_categories(tmp_path):
    image(tmp_path / "JPEGImages" / "000001.jpg", 50, 40)
    objects = voc_object("dog", (1, 1, 10, 10)) + voc_object("cat", (2, 2, 8, 8))
    voc_xml(tmp_path / "Annotations" / "000001.xml", "000001.jpg", objects, size="")
    data = read_boxes(tmp_path / "Annotations")
    assert data.categories == ["cat", "dog"]
    assert (data.images[0].width, data.images[0].height, data.images[0].labels) == (50, 40, ["dog", "cat"])


def test_yolo_reads_normalised_boxes_and_skips_bad_lines(tmp_path):
    image(tmp_path / "images" / "a.png", 40, 20)
    image(tmp_path / "images" / "b.png", 10, 10)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("person\nbicycle\n")
    (labels / "a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n1 0.25 0.5 0.5 1.0\n\n5 0.5 0.5 0.1 0.1\n0 0.5 abc\n0 1.2 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n"
    )
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    data = read_boxes(tmp_path / "images")
    assert data.categories == ["person", "bicycle"]
    a, b = data.images
    np.testing.assert_allclose(a.boxes, [[10, 5, 20, 10], [0, 0, 20, 20], [34, 8, 6, 4]])
    assert a.labels == ["person", "bicycle", "person"]
    assert len(b.boxes) == 0 and b.group == "b"
    assert_skipped(
        data,
        {
            ("a.txt", "line 4"): "class 5 is not in 0..1",
            ("a.txt", "line 5"): "is not 'class cx cy w h'",
            ("a.txt", "line 6"): "lies outside the 40x20 image",
            ("orphan.txt", ""): "no image has this label",
        },
    )
    assert [entry["annotation"] for entry in data.clipped] == ["line 7"]


def test_yolo_labels_beside_images_need_class_names(tmp_path):
    image(tmp_path / "a.png", 20, 20)
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(EdgeCNNError, match="classes.txt"):
        read_yolo(tmp_path)
    data = read_yolo(tmp_path, class_names=["person"])
    np.testing.assert_allclose(data.images[0].boxes, [[5, 5, 10, 10]])


def test_read_boxes_refuses_what_it_cannot_read(tmp_path):
    image(tmp_path / "only_images" / "a.png", 10, 10)
    for path in (tmp_path / "only_images", tmp_path / "only_images" / "a.png", tmp_path / "absent"):
        with pytest.raises(EdgeCNNError, match="holds no box annotations"):
            read_boxes(path)


def test_negatives_have_no_boxes_and_bad_files_are_reported(tmp_path, monkeypatch):
    image(tmp_path / "frames" / "f1.png", 64, 48)
    image(tmp_path / "frames" / "f2.jpg", 64, 48)
    (tmp_path / "frames" / "broken.png").write_bytes(b"not an image")
    image(tmp_path / "frames" / "huge.png", 400, 400)
    monkeypatch.setenv("EDGECNN_MAX_IMAGE_PIXELS", "10000")
    data = negatives(tmp_path / "frames")
    kept = [(p.path.name, p.width, p.height, p.boxes.shape, p.group) for p in data.images]
    assert kept == [("f1.png", 64, 48, (0, 4), "f1"), ("f2.jpg", 64, 48, (0, 4), "f2")]
    reasons = {Path(entry["file"]).name: entry["reason"] for entry in data.skipped}
    assert "cannot be read" in reasons["broken.png"] and "decompression bomb" in reasons["huge.png"]


def photo(group: str, boxes: int) -> BoxImage:
    return BoxImage(Path(f"{group}.png"), 10, 10, np.ones((boxes, 4)), ["person"] * boxes, group, np.zeros(boxes, dtype=bool))


def test_split_by_photo_keeps_photos_whole_and_is_reproducible():
    images = [photo(f"p{i:02d}", 1 + i % 3) for i in range(30)] + [photo(f"p{i:02d}", 0) for i in range(10)]
    images += [photo(f"neg{i}", 0) for i in range(10)]
    splits = split_by_photo(images, val=0.2, test=0.2, seed=3)
    assert sum(len(v) for v in splits.values()) == len(images)
    sides = {split: {p.group for p in chosen} for split, chosen in splits.items()}
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
    assert [len(sides[s]) for s in ("train", "val", "test")] == [24, 8, 8]
    assert all(any(p.group.startswith("neg") for p in chosen) for chosen in splits.values())
    again = split_by_photo(list(reversed(images)), val=0.2, test=0.2, seed=3)
    assert {s: {p.group for p in v} for s, v in again.items()} == sides
    other = split_by_photo(images, val=0.2, test=0.2, seed=4)
    assert {s: {p.group for p in v} for s, v in other.items()} != sides


def test_pennfudan_reads_170_photos_423_boxes_and_splits_by_photo(shared_data):
    data = read_boxes(shared_data / "pennfudan" / "annotations.json")
    assert (len(data.images), data.box_count, data.categories) == (170, 423, ["person"])
    assert data.skipped == [] and data.clipped == []
    assert {p.group for p in data.images} == {p.path.stem for p in data.images}
    frames = negatives(shared_data / "person_free_frames")
    assert len(frames.images) == 200 and frames.skipped == []
    first = split_by_photo(data.images + frames.images, seed=0)
    second = split_by_photo(data.images + frames.images, seed=0)
    assert {s: [p.path for p in v] for s, v in first.items()} == {s: [p.path for p in v] for s, v in second.items()}
    assert sum(len(v) for v in first.values()) == 370
    groups = [{p.group for p in v} for v in first.values()]
    assert sum(len(g) for g in groups) == len(set().union(*groups))
