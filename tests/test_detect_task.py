"""The detect task: decoding and NMS by hand, target encoding round trip, letterboxing, a tiny detector
trained on synthetic scenes through `edgecnn train`, its export's parity, and `edgecnn detect` on it
without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.box_metrics import iou, nms
from edge_cnn.cli import main
from edge_cnn.errors import ManifestError
from edge_cnn.tasks import get_task
from edge_cnn.tasks.detect import Letterbox, decode, encode_targets, letterbox

SIDE = 64


def make_scenes(root: Path, count: int = 48, negatives: int = 8, seed: int = 0) -> Path:
    """Bright rectangles pasted on dark noise at known places (64x64 and 80x48 PNGs), a COCO file with
    their boxes plus three bad annotations, and a folder of person-free noise frames."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for index in range(count):
        width, height = (SIDE, SIDE) if index % 2 else (SIDE + 16, SIDE - 16)
        pixels = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = int(rng.integers(10, 20)), int(rng.integers(14, 26))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if any(x < bx + bw and bx < x + w and y < by + bh and by < y + h for bx, by, bw, bh in boxes):
                continue
            pixels[y : y + h, x : x + w] = 230
            boxes.append((x, y, w, h))
        name = f"scene{index:03d}.png"
        Image.fromarray(pixels).save(root / "images" / name)
        images.append({"id": index, "file_name": name, "width": width, "height": height})
        annotations += [{"id": len(annotations) + 1, "image_id": index, "category_id": 1, "bbox": list(box)} for box in boxes]
    annotations += [
        {"id": 900, "image_id": 0, "category_id": 1, "bbox": [5, 5, 0, 10]},  # zero width
        {"id": 901, "image_id": 0, "category_id": 7, "bbox": [5, 5, 10, 10]},  # unknown category
        {"id": 902, "image_id": 0, "category_id": 1, "bbox": [500, 500, 10, 10]},  # outside the image
    ]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "square"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    (root / "negatives").mkdir()
    for index in range(negatives):
        Image.fromarray(rng.integers(0, 80, (SIDE, SIDE, 3)).astype(np.uint8)).save(root / "negatives" / f"bg{index}.png")
    return root / "annotations.json"


# --- decoding, NMS, targets, letterbox -----------------------------------------------------------


def test_decode_and_nms_give_the_boxes_computed_by_hand():
    """Stride 8 on a 4x4 map (box_scale 4): distances are strides / 4."""
    values = np.zeros((1, 4, 4, 5))
    values[0, 1, 2] = [0.9, 1 / 4, 1 / 4, 1 / 4, 2 / 4]  # centre (20, 12): x 12..28, y 4..28
    values[0, 1, 1] = [0.8, 0.5 / 4, 1 / 4, 1.5 / 4, 2 / 4]  # centre (12, 12): x 8..24, y 4..28: IoU 0.6
    values[0, 3, 3] = [0.6, 0.5 / 4, 0.5 / 4, 0.5 / 4, 0.5 / 4]  # centre (28, 28): x 24..32, y 24..32
    values[0, 0, 0] = [0.4, 0.1, 0.1, 0.1, 0.1]  # below the threshold
    (found,) = decode(values, stride=8, threshold=0.5, iou_threshold=0.5)
    np.testing.assert_allclose(found, [[12, 4, 16, 24, 0.9, 0], [24, 24, 8, 8, 0.6, 0]])
    (loose,) = decode(values, stride=8, threshold=0.5, iou_threshold=0.7)  # IoU 0.6 survives a looser NMS
    assert len(loose) == 3


def test_nms_keeps_the_best_of_each_overlapping_group():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10.5]], dtype=float)
    scores = np.array([0.5, 0.9, 0.3, 0.4])
    assert iou(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(81 / 119)
    assert nms(boxes, scores, 0.5) == [1, 2]
    assert nms(boxes, scores, 0.95) == [1, 0, 2]  # boxes 0 and 3: IoU 100 / 105
    assert nms(boxes, scores, 0.96) == [1, 0, 3, 2]


def test_encoding_then_decoding_gives_the_boxes_back():
    boxes = np.array([[3.0, 5.0, 14.0, 22.0], [40.0, 30.0, 20.0, 30.0], [50.5, 2.0, 6.0, 7.0]])
    target = encode_targets(boxes, [0, 1, 1], (8, 8), 8, 2)
    assert target.shape == (8, 8, 6) and target[..., :2].sum() >= 3  # every box has a positive cell
    (found,) = decode(target[None], 8, threshold=0.5, iou_threshold=0.5)
    order = np.lexsort((found[:, 1], found[:, 0]))
    np.testing.assert_allclose(found[order, :4], boxes, atol=0.1)
    assert found[order, 5].tolist() == [0, 1, 1]


def test_letterbox_keeps_the_aspect_and_maps_boxes_both_ways():
    image = Image.new("RGB", (100, 50), (200, 10, 10))
    pixels, placed = letterbox(image, 64, 64)
    assert pixels.shape == (64, 64, 3) and placed == Letterbox(0.64, 0.0, 16.0, 100, 50, 64, 64)
    assert tuple(pixels[0, 0]) == (114, 114, 114) and tuple(pixels[32, 32]) == (200, 10, 10)
    boxes = np.array([[10.0, 5.0, 30.0, 40.0]])
    np.testing.assert_allclose(placed.to_input(boxes), [[6.4, 19.2, 19.2, 25.6]])
    np.testing.assert_allclose(placed.to_original(placed.to_input(boxes)), boxes)
    np.testing.assert_allclose(placed.to_original([[-5.0, 10.0, 20.0, 60.0]]), [[0.0, 0.0, 15 / 0.64, 50.0]])


def test_a_detect_manifest_records_its_decoding_and_refuses_a_bad_one():
    from edge_cnn.manifest import _decoding

    decoding = get_task("detect").decoding((64, 64), (None, 8, 8, 5))
    assert decoding["stride"] == 8 and decoding["box_scale"] == 8 and _decoding(decoding) == decoding
    with pytest.raises(ValueError, match="stride"):
        _decoding({**decoding, "stride": 0})
    with pytest.raises(ValueError, match="nms_iou"):
        _decoding({**decoding, "nms_iou": 3})


# --- a tiny detector through train, export and detect ----------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def detect_run(scenes, tmp_path_factory) -> Path:
    from edge_cnn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("detect") / "run"
    config = TrainConfig(data=str(scenes), negatives=str(scenes.parent / "negatives"), out=str(out), task="detect",
                         model="small_convnet", width=0.5, img_size="64x64", epochs=30, fine_tune_epochs=0,
                         batch_size=8, lr=3e-3, hflip=True, zoom=0.1, brightness=0.1, grey=0.2, blur=0.1, downscale=0.1)
    train(config, verbose=0)
    return out


def test_a_tiny_detector_finds_the_synthetic_squares(detect_run):
    metrics = json.loads((detect_run / "metrics.json").read_text())
    assert metrics["task"] == "detect" and metrics["labels"] == ["square"]
    for split in ("val", "test"):
        assert metrics[split]["ap_50"] > 0.6, metrics[split]  # chance is ~0: boxes must land on the squares
        assert metrics[split]["person_free_frames"] >= 1 and metrics[split]["fp_per_frame"] <= 0.5
        assert set(metrics[split]) >= {"ap_50_95", "log_average_miss_rate", "per_class", "photos", "boxes"}
    reasons = " ".join(s["reason"] for s in metrics["skipped"])
    assert "zero or negative size" in reasons and "category_id 7" in reasons and "outside" in reasons
    assert (detect_run / "curves.png").is_file() and (detect_run / "boxes.json").is_file()
    assert "task: detect" in (detect_run / "config.yaml").read_text()


def test_a_detect_run_reads_back_its_split_by_photo(detect_run):
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train.box_route import BoxRoute

    data = BoxRoute().read_back(RunDir(detect_run))
    groups = {split: {image.group for image in images} for split, images in data.splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert sum(map(len, data.splits.values())) == 48 + 8 and len(data.person_free) == 8
    assert all(label == -1 for _, label in RunDir(detect_run).read_split("test"))


@pytest.fixture(scope="module")
def detect_export(detect_run):
    from edge_cnn.export import export

    return export(detect_run, int8=True, calib=16)


def test_a_detect_export_matches_keras_in_tflite_and_onnx(detect_run, detect_export, tmp_path):
    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.export import export

    with pytest.raises(EdgeCNNError, match="a detect model has none"):
        export(detect_run, embedding=True, out=tmp_path / "embedding")
    result = detect_export
    assert result.summary["parity_data"] == "test split" and result.summary["score"] == "AP@0.5"
    trained = json.loads((detect_run / "metrics.json").read_text())["test"]["ap_50"]
    # AP@0.5 (%) scored as training scores it (float noise between processes may swap a near tie)
    assert result.summary["keras_accuracy"] == pytest.approx(100 * trained, abs=1.0)
    assert result.manifest.task == "detect" and result.manifest.decoding["stride"] == 8
    assert result.summary["calibration_images"] == 16
    rows = {(a.format, a.precision): a for a in result.manifest.artifacts}
    assert set(rows) == {("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")}, result.rows
    for (fmt, precision), artifact in rows.items():
        assert artifact.outputs[0].meaning == "box_map" and artifact.outputs[0].shape[1:] == [8, 8, 5]
        if precision == "fp32":
            assert artifact.status == "OK" and artifact.parity["max_abs_diff"] <= 1e-4
            assert artifact.parity["agreement"] == 100.0 and artifact.parity["accuracy_drop_pp"] == 0.0
        else:
            assert artifact.parity["max_abs_diff"] < 0.1 and artifact.parity["agreement"] >= 80.0
            assert artifact.parity["accuracy_drop_pp"] <= 10.0


def test_edgecnn_detect_writes_boxes_of_a_detect_export_without_tensorflow(detect_run, detect_export, scenes, tmp_path):
    coco = json.loads(scenes.read_text())
    name = coco["images"][1]["file_name"]
    truth = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 1]
    code = (
        "import sys; from click.testing import CliRunner; from edge_cnn.cli import main;"
        f"r = CliRunner().invoke(main, ['detect', {str(detect_run / 'export')!r}, {str(scenes.parent / 'images' / name)!r},"
        f" '--out', {str(tmp_path / 'out')!r}, '--precision', 'fp32', '--backend', 'onnx']);"
        "print(r.output); assert r.exit_code == 0, r.output;"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "scene001.json").read_text())
    assert (tmp_path / "out" / "scene001.png").is_file()
    boxes = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in record["boxes"]], dtype=float).reshape(-1, 4)
    assert {b["label"] for b in record["boxes"]} <= {"square"} and all(0.5 <= b["score"] <= 1 for b in record["boxes"])
    assert iou(np.array(truth, dtype=float), boxes).max(axis=1).min() >= 0.5  # every square found


def test_predictor_detect_maps_boxes_to_the_original_pixels(detect_export, scenes):
    from edge_cnn.runtime import Predictor

    predictor = Predictor.load(detect_export.manifest_path.parent, backend="tflite", precision="fp32")
    coco = json.loads(scenes.read_text())
    wide = next(entry for entry in coco["images"] if entry["width"] > entry["height"] and entry["id"] > 0)
    path = scenes.parent / "images" / wide["file_name"]
    truth = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == wide["id"]], dtype=float)
    found = predictor.detect(path)
    boxes = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in found]).reshape(-1, 4)
    assert iou(truth, boxes).max(axis=1).min() >= 0.5
    assert predictor.detect([path, path], threshold=0.99) == [[b for b in found if b["score"] >= 0.99]] * 2
    with pytest.raises(Exception, match="no classification output"):
        predictor.predict(path)


# --- bad input through the CLI ---------------------------------------------------------------------


def _refused(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.output


def test_train_detect_on_a_bad_annotation_file_is_one_error_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    _refused(CliRunner().invoke(main, ["train", "--task", "detect", "--data", str(broken), "--out", str(tmp_path / "a")]),
             "is not valid JSON")
    unknown = tmp_path / "unknown.json"
    Image.new("RGB", (32, 32)).save(tmp_path / "one.png")
    unknown.write_text(json.dumps({"images": [{"id": 1, "file_name": "one.png"}], "categories": [{"id": 1, "name": "a"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 9, 9]}]}))
    _refused(CliRunner().invoke(main, ["train", "--task", "detect", "--data", str(unknown), "--out", str(tmp_path / "b")]),
             "category_id 5 names no category")
    _refused(CliRunner().invoke(main, ["train", "--task", "detect", "--data", str(unknown), "--negatives",
                                       str(tmp_path / "nowhere")]), "--negatives")


def test_detect_with_an_unknown_class_is_one_error_line(detect_export, scenes, tmp_path):
    image = scenes.parent / "images" / "scene000.png"
    result = CliRunner().invoke(main, ["detect", str(detect_export.manifest_path.parent), str(image), "--out",
                                       str(tmp_path), "--positive", "person"])
    _refused(result, "class 'person' is not one of the model's labels ['square']")


def test_the_pedestrian_detect_recipe_is_a_valid_detect_config():
    from edge_cnn.recipes import list_recipes, load_recipe
    from edge_cnn.train import TrainConfig

    assert "pedestrian_detect" in list_recipes()
    recipe = load_recipe("pedestrian_detect")
    recipe["negatives"] = None  # the shared frames may be absent here
    config = TrainConfig.from_dict(recipe)
    assert config.task == "detect" and config.size() == (256, 256) and config.grey > 0


def test_an_interrupted_detect_run_resumes_where_it_stopped(scenes, tmp_path):
    """The box route's batches are drawn from (seed, epoch): a resumed run repeats the uninterrupted one."""
    from edge_cnn.keras import keras
    from edge_cnn.train import TrainConfig, train

    def config(out):
        return TrainConfig(data=str(scenes), out=str(out), task="detect", model="small_convnet", width=0.25,
                           img_size="64x64", epochs=4, fine_tune_epochs=0, batch_size=16, hflip=True, zoom=0.1)

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 2:
                raise KeyboardInterrupt

    whole = train(config(tmp_path / "whole"), verbose=0)
    first = train(config(tmp_path / "cut"), callbacks=[CtrlC()], verbose=0)
    assert first.interrupted
    resumed = train(TrainConfig(out=str(tmp_path / "cut")), resume=True, verbose=0)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    assert [row["loss"] for row in resumed.history] == pytest.approx([row["loss"] for row in whole.history], rel=1e-5)
    assert resumed.metrics["test"] == whole.metrics["test"]
