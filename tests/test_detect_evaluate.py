"""`edgecnn evaluate RUN_OR_EXPORT --data annotations.json`: the detection metrics of a scripted detector
against figures computed by hand, a tiny detector's run and export scored exactly as ``edge_cnn.box_metrics``
scores the same detections, the two plots and the report, and bad input as one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.box_metrics import ap_50_95, average_precision, false_positives_per_frame, log_average_miss_rate
from edge_cnn.cli import main
from edge_cnn.detect.evaluation import (
    MISS_RATE_NAME, PR_NAME, REPORT_NAME, evaluate_detection, read_truth, score_model, write_report,
)
from test_detect_task import make_scenes


def _write_coco(root: Path, boxes_per_image: dict[str, list[list[float]]], size=(40, 40)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, (name, boxes) in enumerate(boxes_per_image.items()):
        Image.new("RGB", size).save(root / name)
        images.append({"id": index, "file_name": name, "width": size[0], "height": size[1]})
        annotations += [{"id": len(annotations) + number, "image_id": index, "category_id": 1, "bbox": box}
                        for number, box in enumerate(boxes, start=1)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path


# --- a scripted detector: the metrics by hand ------------------------------------------------------


@pytest.fixture
def known_case(tmp_path):
    """Two photos (three people) and two person-free frames, with the detections a scripted detector gives."""
    annotations = _write_coco(tmp_path / "photos", {"a.png": [[0, 0, 10, 10], [20, 20, 10, 10]], "b.png": [[0, 0, 10, 10]]})
    (tmp_path / "frames").mkdir()
    for name in ("f1.png", "f2.png"):
        Image.new("RGB", (40, 40)).save(tmp_path / "frames" / name)
    scripted = {
        "a.png": [[0, 0, 10, 10, 0.9, 0], [30, 0, 5, 5, 0.8, 0], [20, 20, 10, 10, 0.6, 0]],
        "b.png": [[0, 0, 10, 12, 0.7, 0]],  # IoU 100/120: a hit up to IoU 0.8, a miss from 0.85
        "f1.png": [[0, 0, 5, 5, 0.6, 0], [9, 9, 5, 5, 0.3, 0]],
        "f2.png": [[0, 0, 5, 5, 0.55, 0]],
    }

    def detect(paths):
        return [np.array(scripted[Path(path).name], dtype=float) for path in paths]

    return annotations, tmp_path / "frames", detect


def test_a_scripted_detector_scores_what_was_computed_by_hand(known_case, tmp_path):
    annotations, frames, detect = known_case
    photos, person_free, skipped = read_truth(annotations, frames, ["person"])
    assert (len(photos), len(person_free), skipped) == (2, 2, [])
    result = score_model("scripted", "scripted", None, detect, photos, person_free, ["person"], threshold=0.5, batch_size=3)
    metrics = result.metrics
    # ranked 0.9 hit, 0.8 false, 0.7 hit, 0.6 hit of 3: precision envelope 1 up to recall 1/3 (34 of COCO's
    # 101 recall points), 0.75 beyond (67 points)
    ap_50 = (34 * 1.0 + 67 * 0.75) / 101
    # from IoU 0.85 the 0.7 detection misses: 1 up to recall 1/3, 0.5 to 2/3 (33 points), 0 beyond
    ap_strict = (34 * 1.0 + 33 * 0.5) / 101
    assert metrics["ap_50"] == pytest.approx(ap_50)
    assert metrics["ap_50_95"] == pytest.approx((7 * ap_50 + 3 * ap_strict) / 10)
    # FPPI over the 2 photos: 0 while recall is 1/3 (the 7 FPPI points below 0.5), then 0.5 with recall 1
    assert metrics["log_average_miss_rate"] == pytest.approx(math.exp((7 * math.log(2 / 3) + 2 * math.log(1e-10)) / 9))
    assert metrics["fp_per_frame"] == pytest.approx(1.0)  # 0.6 on f1 and 0.55 on f2 reach the threshold 0.5
    assert (metrics["photos"], metrics["person_free_frames"], metrics["boxes"]) == (2, 2, 3)
    curve = result.curves["person"]
    np.testing.assert_allclose(curve["recall"], [1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve["precision"], [1, 1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(curve["fppi"], [0, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(curve["miss_rate"], [2 / 3, 2 / 3, 1 / 3, 0], atol=1e-12)

    report = write_report(tmp_path / "src", annotations, frames, ["person"], photos, person_free, skipped, 0.5,
                          [result], tmp_path / "out")
    assert report.rows() == [{"model": "scripted", "AP@0.5": metrics["ap_50"], "AP@[.5:.95]": metrics["ap_50_95"],
                              "miss rate": metrics["log_average_miss_rate"], "FP/frame": 1.0,
                              "ms/image": result.ms_per_image}]
    for png in (report.precision_recall_png, report.miss_rate_png):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


def test_the_scores_equal_pycocotools_on_a_random_known_set(tmp_path):
    """AP@0.5 and AP@[.5:.95] of evaluate's scoring equal COCOeval's (stats[1], stats[0]) on random scenes:
    found people (jittered boxes, so some miss at the stricter IoUs), false boxes and missed people."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    truth, found = {}, {}
    for index in range(8):
        boxes = [[*rng.uniform(0, 120, 2), *rng.uniform(12, 60, 2)] for _ in range(rng.integers(0, 5))]
        hits = [[x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
                for x, y, w, h in boxes if rng.random() < 0.8]
        false = [[*rng.uniform(0, 150, 2), *rng.uniform(10, 40, 2)] for _ in range(rng.integers(0, 4))]
        truth[f"{index}.png"] = [[round(v, 2) for v in box] for box in boxes]
        found[f"{index}.png"] = [[*box, rng.uniform(0.05, 1.0), 0] for box in hits + false]
    annotations = _write_coco(tmp_path / "photos", truth, size=(200, 200))
    photos, _, _ = read_truth(annotations, None, ["person"])
    result = score_model("scripted", "scripted", None,
                         lambda paths: [np.array(found[Path(p).name], dtype=float).reshape(-1, 6) for p in paths],
                         photos, [], ["person"], threshold=0.5)

    coco = json.loads(annotations.read_text())
    for annotation in coco["annotations"]:
        annotation.update(area=annotation["bbox"][2] * annotation["bbox"][3], iscrowd=0)
    ids = {image["file_name"]: image["id"] for image in coco["images"]}
    results = [{"image_id": ids[name], "category_id": 1, "bbox": [float(v) for v in row[:4]], "score": float(row[4])}
               for name, rows in found.items() for row in rows]
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = coco
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert 0.2 < evaluation.stats[1] < 0.95  # a case with misses and false boxes, not a trivial one
    assert result.metrics["ap_50"] == pytest.approx(evaluation.stats[1], abs=1e-9)
    assert result.metrics["ap_50_95"] == pytest.approx(evaluation.stats[0], abs=1e-9)


def test_unknown_categories_are_skipped_and_reported(tmp_path):
    annotations = _write_coco(tmp_path, {"a.png": [[0, 0, 10, 10]]})
    data = json.loads(annotations.read_text())
    data["categories"].append({"id": 2, "name": "dog"})
    data["annotations"].append({"id": 9, "image_id": 0, "category_id": 2, "bbox": [20, 20, 5, 5]})
    annotations.write_text(json.dumps(data))
    photos, frames, skipped = read_truth(annotations, None, ["person"])
    assert len(photos[0][1].boxes) == 1 and frames == []
    assert "category 'dog' is not one of the model's labels ['person']" in skipped[0]["reason"]


def test_yolo_labels_without_class_names_are_read_as_the_models_classes(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    photos, _, skipped = read_truth(tmp_path, None, ["person"])
    np.testing.assert_allclose(photos[0][1].boxes, [[15, 10, 10, 20]])
    assert photos[0][1].classes.tolist() == [0] and skipped == []


# --- a tiny trained detector: run and export --------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes"), count=24, negatives=4)


@pytest.fixture(scope="module")
def detect_run(scenes, tmp_path_factory) -> Path:
    from edge_cnn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("detect") / "run"
    train(TrainConfig(data=str(scenes), negatives=str(scenes.parent / "negatives"), out=str(out), task="detect",
                      model="small_convnet", width=0.5, img_size="64x64", epochs=14, fine_tune_epochs=0, batch_size=8,
                      lr=3e-3), verbose=0)
    return out


@pytest.fixture(scope="module")
def detect_export(detect_run) -> Path:
    from edge_cnn.export import export

    return export(detect_run).manifest_path.parent  # fp32 TFLite and ONNX


def _direct(found: list[np.ndarray], photos, frames, threshold: float) -> dict[str, float]:
    """box_metrics on the same detections, without the evaluation's code."""
    shown = [rows[:, :5] for rows in found[: len(photos)]]
    truth = [t.boxes for _, t in photos]
    ignore = [t.ignore for _, t in photos]
    return {"ap_50": average_precision(shown, truth, 0.5, ignore), "ap_50_95": ap_50_95(shown, truth, ignore),
            "log_average_miss_rate": log_average_miss_rate(shown, truth, 0.5, ignore),
            "fp_per_frame": false_positives_per_frame([rows[:, :5] for rows in found[len(photos):]], threshold)}


def test_evaluate_an_export_scores_every_artifact_as_box_metrics_does(detect_export, scenes, tmp_path):
    from edge_cnn.runtime import Predictor

    result = CliRunner().invoke(main, ["evaluate", str(detect_export), "--data", str(scenes), "--negatives",
                                       str(scenes.parent / "negatives"), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "tflite fp32" in result.output and "onnx fp32" in result.output and "FP/frame" in result.output
    report = json.loads((tmp_path / "eval" / REPORT_NAME).read_text())
    assert sorted(row["kind"] for row in report["models"]) == ["onnx fp32", "tflite fp32"]  # every artifact
    assert (report["photos"], report["person_free_frames"], report["protocol"]) == (24, 4, "detect")
    assert len(report["skipped"]) == 3  # make_scenes' three bad annotations
    for name in (PR_NAME, MISS_RATE_NAME):
        with Image.open(tmp_path / "eval" / name) as image:
            assert image.format == "PNG"

    evaluated = evaluate_detection(detect_export, scenes, scenes.parent / "negatives", tmp_path / "again")
    photos, frames, _ = read_truth(scenes, scenes.parent / "negatives", evaluated.labels)
    assert [m.to_dict() for m in evaluated.models] == [
        {**row, "ms_per_image": m.ms_per_image} for row, m in zip(report["models"], evaluated.models)]
    for item in evaluated.models:
        direct = _direct(item.detections, photos, frames, evaluated.threshold)
        for key, value in direct.items():
            assert item.metrics[key] == pytest.approx(value), (item.kind, key)
    assert any(item.metrics["ap_50"] > 0 for item in evaluated.models)  # the numbers compared are not all zero
    # the detections are the runtime's own, image by image
    artifact = next(item for item in evaluated.models if item.kind == "onnx fp32")
    predictor = Predictor.load(detect_export / artifact.model)
    found = predictor.detect(str(photos[1][0].path), threshold=0.05)
    np.testing.assert_allclose(artifact.detections[1][:, :5], [[b["x"], b["y"], b["w"], b["h"], b["score"]] for b in found])


def test_evaluate_a_run_uses_the_keras_model(detect_run, scenes):
    result = CliRunner().invoke(main, ["evaluate", str(detect_run), "--data", str(scenes), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output[result.output.index("["):])
    assert row["kind"] == "keras fp32" and row["photos"] == 24 and row["fp_per_frame"] is None
    assert (detect_run / "evaluation" / REPORT_NAME).is_file() and (detect_run / "evaluation" / PR_NAME).is_file()


# --- bad input through the CLI ---------------------------------------------------------------------


def _refused(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.output


def test_bad_input_is_one_error_line(detect_export, scenes, tmp_path):
    export = str(detect_export)
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(tmp_path / "missing.json")]), "does not exist")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(broken)]), "is not valid JSON")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "square"}]}))
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(empty)]), "holds no usable box")
    other = _write_coco(tmp_path / "other", {"a.png": [[0, 0, 10, 10]]})  # 'person' boxes for a 'square' model
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(other)]), "holds no usable box of the model's labels")
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(scenes), "--negatives", str(tmp_path / "nowhere")]),
             "--negatives")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(scenes), "--out", str(blocker / "eval")]),
             "--out")
    _refused(CliRunner().invoke(main, ["evaluate", export, "--data", str(scenes), "--pairs", str(broken)]),
             "--pairs belong(s) to --protocol lfw")


def test_a_classify_run_given_annotations_is_one_error_line(tmp_path):
    run = tmp_path / "classify_run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not read")  # refused before any model loads
    (run / "labels.json").write_text('["a", "b"]')
    (run / "config.yaml").write_text("task: classify\n")
    annotations = _write_coco(tmp_path / "photos", {"a.png": [[0, 0, 10, 10]]})
    _refused(CliRunner().invoke(main, ["evaluate", str(run), "--data", str(annotations)]),
             "box annotations evaluate detect runs and exports only")
    _refused(CliRunner().invoke(main, ["evaluate", str(run), "--data", str(annotations), "--protocol", "detect"]),
             "box annotations evaluate detection models only")
    _refused(CliRunner().invoke(main, ["evaluate", str(run), "--data", str(tmp_path), "--negatives", str(tmp_path)]),
             "--negatives belongs to detection")
