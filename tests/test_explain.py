"""edgecnn explain on a task with a known answer: a bright square, always somewhere in the
top-left quadrant, decides class 'square' (absent: 'plain'). A GAP head cannot use the
square's position, only its presence, so the heat must sit on the square."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_classifier
from PIL import Image

SIZE, SIDE = 32, 8
LABELS = ["square", "plain"]


def make_image(rng, square: bool):
    """Dark noise; with ``square`` a bright 8x8 square inside the top-left 16x16 quadrant."""
    image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
    if not square:
        return image, None
    y, x = (int(v) for v in rng.integers(0, SIZE // 2 - SIDE + 1, 2))
    image[y : y + SIDE, x : x + SIDE] = 230
    return image, (x, y, x + SIDE, y + SIDE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edge_cnn.keras import keras
    from edge_cnn.preprocess import PreprocessSpec
    from edge_cnn.run_dir import RunDir

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    spec = PreprocessSpec(height=SIZE, width=SIZE, color="rgb")
    train = [make_image(rng, square=i % 2 == 0) for i in range(96)]
    x = spec.normalize(np.stack([image for image, _ in train]))
    y = np.array([0 if box else 1 for _, box in train])
    model = tiny_classifier((SIZE, SIZE, 3), len(LABELS), name="squares")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)

    root = tmp_path_factory.mktemp("explain")
    run = RunDir(root / "run")
    run.path.mkdir()
    model.save(run.model_path)
    run.write_labels(LABELS)
    spec.save(run.preprocess_path)
    tests = []
    (root / "images").mkdir()
    for i in range(10):
        image, box = make_image(rng, square=True)
        path = root / "images" / f"square_{i}.png"
        Image.fromarray(image).save(path)
        tests.append(SimpleNamespace(path=path, pixels=image, x=spec.normalize(image), box=box))
    plain = root / "images_plain.png"
    Image.fromarray(make_image(rng, square=False)[0]).save(plain)
    run.write_split("test", [(t.path, 0) for t in tests] + [(plain, 1)])
    accuracy = (model.predict(np.stack([t.x for t in tests]), verbose=0).argmax(1) == 0).mean()
    assert accuracy >= 0.9, "the tiny model must solve the task for the explanations to be checkable"
    return SimpleNamespace(model=model, spec=spec, run=run.path, tests=tests, root=root)


def peak(heatmap):
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return int(x), int(y)


def near_box(point, box, margin=3):
    x, y = point
    x0, y0, x1, y1 = box
    return x0 - margin <= x < x1 + margin and y0 - margin <= y < y1 + margin


@pytest.mark.parametrize("method", ["gradcam", "cam"])
def test_heat_peaks_on_the_square(trained, method):
    from edge_cnn.explain import cam, gradcam

    explain = gradcam if method == "gradcam" else cam
    peaks = []
    for test in trained.tests:
        heatmap = explain(trained.model, test.x)
        assert heatmap.shape == (SIZE, SIZE)
        assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
        peaks.append(peak(heatmap))
    in_quadrant = [x < SIZE // 2 and y < SIZE // 2 for x, y in peaks]
    on_square = [near_box(p, t.box) for p, t in zip(peaks, trained.tests)]
    assert sum(in_quadrant) >= 8, peaks
    assert sum(on_square) >= 8, (peaks, [t.box for t in trained.tests])


def test_cam_is_the_weighted_sum_of_the_pooled_feature_map(trained):
    from edge_cnn.explain import Cam, cam, gradcam
    from edge_cnn.keras import keras

    model, test = trained.model, trained.tests[0]
    features = keras.Model(model.inputs, model.get_layer("pool1").output)(test.x[None]).numpy()[0]
    kernel = model.get_layer("predictions").kernel.numpy()
    expected = features @ kernel[:, 0]  # (8, 8): sum_k w_k,square * F_k(x, y)
    raw, classes, _ = Cam(model).raw(test.x[None], class_index=0)
    np.testing.assert_allclose(raw[0], expected, rtol=1e-4, atol=1e-5)
    assert classes.tolist() == [0]
    # at the pooled layer Grad-CAM's weights are w_kc / (h*w): the same map after scaling
    np.testing.assert_allclose(cam(model, test.x, 0), gradcam(model, test.x, class_index=0), atol=1e-4)


def test_gradcam_explains_the_logit_of_the_chosen_class_at_any_layer(trained):
    from edge_cnn.explain import GradCam, gradcam

    model, test = trained.model, trained.tests[0]
    early = gradcam(model, test.x[None], layer="relu0")
    assert early.shape == (SIZE, SIZE) and 0.0 <= early.min() and early.max() <= 1.0
    square, plain = gradcam(model, test.x, class_index=0), gradcam(model, test.x, class_index=1)
    assert not np.allclose(square, plain)  # evidence for 'plain' is not on the square
    _, _, logits = GradCam(model).raw(test.x[None])
    probabilities = model.predict(test.x[None], verbose=0)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(), probabilities, rtol=1e-4)


def test_bad_layer_class_and_head_give_clear_errors(trained):
    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.explain import cam, gradcam
    from edge_cnn.keras import keras, layers

    x = trained.tests[0].x
    with pytest.raises(EdgeCNNError, match=r"'nope'.*valid layers: conv0, bn0, relu0"):
        gradcam(trained.model, x, layer="nope")
    with pytest.raises(EdgeCNNError, match="'head_pool' is not a 4-D"):
        gradcam(trained.model, x, layer="head_pool")
    with pytest.raises(EdgeCNNError, match="class index 5"):
        gradcam(trained.model, x, class_index=5)
    with pytest.raises(EdgeCNNError, match="does not fit model input"):
        gradcam(trained.model, np.zeros((16, 16, 3), np.float32))
    inputs = keras.Input((SIZE, SIZE, 3))
    flat = layers.Flatten()(layers.Conv2D(4, 3, name="c")(inputs))
    no_gap = keras.Model(inputs, layers.Dense(2, activation="softmax")(flat))
    with pytest.raises(EdgeCNNError, match="CAM needs a GlobalAveragePooling2D.*gradcam"):
        cam(no_gap, x)
    assert gradcam(no_gap, x).shape == (SIZE, SIZE)  # Grad-CAM works without a GAP head


def test_overlay_blends_with_a_perceptual_colormap(trained, tmp_path):
    from edge_cnn.explain import blend, overlay, save_png

    test = trained.tests[0]
    heat = np.zeros((SIZE, SIZE), np.float32)
    heat[:8, :8] = 1.0
    mixed = blend(test.pixels, heat, alpha=1.0)
    assert mixed.shape == (SIZE, SIZE, 3) and mixed.dtype == np.uint8
    assert mixed[0, 0].sum() > mixed[-1, -1].sum()  # inferno: hot is bright, cold is black
    np.testing.assert_array_equal(blend(test.pixels, heat, alpha=0.0), test.pixels)
    figure = overlay(test.pixels, heat, "square 0.99")
    save_png(tmp_path / "o.png", figure)
    with Image.open(tmp_path / "o.png") as png:
        assert png.size == (figure.shape[1], figure.shape[0]) and png.size[0] > 2 * SIZE
    grey = overlay(test.pixels[:, :, :1], heat, "grey input")
    assert grey.ndim == 3


def test_activations_and_grid(trained, tmp_path):
    from edge_cnn.explain import activation_grid, activations
    from edge_cnn.explain.drawing import save_png

    maps = activations(trained.model, trained.tests[0].x, layers=3)
    assert list(maps)[0] == "conv0" and list(maps)[-1] == "pool1" and len(maps) == 3
    assert maps["conv0"].shape == (32, 32, 8) and maps["pool1"].shape == (8, 8, 16)
    assert list(activations(trained.model, trained.tests[0].x, layers="relu1,conv0")) == ["relu1", "conv0"]
    save_png(tmp_path / "acts.png", activation_grid(maps, channels=4))
    with Image.open(tmp_path / "acts.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100


def test_filter_ascent_raises_each_filters_activation(trained):
    from edge_cnn.explain import filter_patterns

    patterns = filter_patterns(trained.model, "relu1", filters=[0, 3, 7], steps=20,
                               value_range=trained.spec.value_range())
    assert patterns.filters == [0, 3, 7] and patterns.images.shape == (3, SIZE, SIZE, 3)
    assert patterns.images.min() >= 0.0 and patterns.images.max() <= 1.0
    assert np.all(patterns.final_scores > patterns.start_scores + 1e-3), (patterns.start_scores, patterns.final_scores)


def test_heat_share_on_constructed_heatmaps():
    from edge_cnn.explain import CENTER_BAND, Box, heat_share
    from edge_cnn.explain.localization import area_share, parse_box, share_ceiling

    assert CENTER_BAND.pixels(128, 64) == (16, 13, 48, 115)
    band_area = 32 * 102 / (64 * 128)
    assert area_share(CENTER_BAND, 128, 64) == pytest.approx(band_area)
    assert heat_share(np.ones((128, 64)), CENTER_BAND) == pytest.approx(band_area)
    heat = np.zeros((128, 64))
    heat[13:115, 16:48] = 1.0
    heat[0, 0] = 34.0  # 32*102 = 3264 inside, 34 outside
    assert heat_share(heat, CENTER_BAND) == pytest.approx(3264 / 3298)
    assert heat_share(np.zeros((8, 8)), CENTER_BAND) is None
    # an ideal map seen through a layer's resolution: full resolution is perfect, a stride-32
    # 4x2 map cannot resolve the band's width (barely above the area share)
    assert share_ceiling(CENTER_BAND, (128, 64), (128, 64)) == pytest.approx(1.0)
    assert 0.85 < share_ceiling(CENTER_BAND, (128, 64), (16, 8)) < 0.95
    assert share_ceiling(CENTER_BAND, (128, 64), (4, 2)) < band_area + 0.05
    assert parse_box("0,0,0.5,0.5") == Box(0, 0, 0.5, 0.5, "0,0,0.5,0.5")
    from edge_cnn.errors import EdgeCNNError

    with pytest.raises(EdgeCNNError, match="relative coordinates"):
        parse_box("0.5,0,0.2,1")


def test_summary_over_a_folder_localises_the_square(trained, tmp_path):
    from edge_cnn.explain import Box, summary

    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"not a png")
    items = [t.path for t in trained.tests] + [corrupt]
    quadrant = Box(0, 0, 0.5, 0.5, "top-left")
    result = summary(trained.model, items, trained.spec, quadrant, method="cam", batch_size=4)
    assert result.count == 10 and [Path(p).name for p, _ in result.failed] == ["broken.png"]
    assert result.mean_heatmap.shape == (SIZE, SIZE)
    assert result.box_area_share == pytest.approx(0.25)
    assert result.heat_share > 0.6, result.heat_share
    data = result.to_dict()
    assert data["heat_to_area_ratio"] == pytest.approx(result.heat_share / 0.25)
    assert data["map_resolution"] == [8, 8] and result.heat_share < data["heat_share_ceiling"] <= 1.0
    assert data["failed"][0]["reason"].startswith("image ")


def run_cli(*args):
    from edge_cnn.cli import main

    return CliRunner().invoke(main, ["explain", *map(str, args)])


def test_cli_writes_overlays_and_raw_maps(trained, tmp_path):
    images = [t.path for t in trained.tests[:2]]
    result = run_cli(trained.run, *images, "--method", "gradcam", "--out", tmp_path, "--save-raw")
    assert result.exit_code == 0, result.output
    for image in images:
        with Image.open(tmp_path / f"{image.stem}_gradcam.png") as png:
            assert png.size[0] > SIZE
        raw = np.load(tmp_path / f"{image.stem}_gradcam.npy")
        assert raw.shape == (SIZE, SIZE) and 0.0 <= raw.min() and raw.max() <= 1.0
    rows = json.loads((tmp_path / "explain_gradcam.json").read_text())["rows"]
    assert [row["predicted"] for row in rows] == ["square", "square"]
    assert f"results saved to {tmp_path}" in result.stdout
    result = run_cli(trained.run, images[0], "--method", "cam", "--class", "plain", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "explain_cam.json").read_text())["rows"][0]["explained"] == "plain"


def test_python_api_explain_returns_rows_and_files_like_the_cli(trained, tmp_path):
    from edge_cnn import explain

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = explain.explain(trained.run, [trained.tests[0].path, broken], "gradcam", out=tmp_path / "api")
    assert [row.get("predicted") for row in result.rows] == ["square", None]
    assert result.failures == [(str(broken), result.rows[1]["error"])]
    assert (tmp_path / "api" / f"{trained.tests[0].path.stem}_gradcam.png").is_file() and result.report.is_file()


def test_cli_activations_filters_and_summary(trained, tmp_path):
    image = trained.tests[0].path
    result = run_cli(trained.run, image, "--activations", "--layers", "2", "--out", tmp_path / "acts.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "acts.png").is_file()
    result = run_cli(trained.run, "--filters", "conv1", "--num-filters", "4", "--steps", "5",
                     "--out", tmp_path / "filters.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "filters.png").is_file()
    result = run_cli(trained.run, "--data", trained.root / "images", "--summary", "--box", "0,0,0.5,0.5",
                     "--method", "cam", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary_cam.json").read_text())
    assert summary["images"] == 10 and summary["box_area_share"] == pytest.approx(0.25)
    assert summary["heat_share"] > 0.6
    assert (tmp_path / "mean_heatmap_cam.png").is_file()
    result = run_cli(trained.run, "--split", "test", "--class", "plain", "--summary", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary_gradcam.json").read_text())
    assert summary["images"] == 1 and summary["class"] == "plain" and "heat_share" not in summary


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "nope"], "valid layers: conv0"),
        (["--class", "dog"], "labels.json has: square, plain"),
        (["--method", "cam", "--layer", "relu1"], "drop --layer"),
        (["--summary", "--filters", "conv0"], "separate modes"),
        (["--box", "center-band"], "--box applies to --summary"),
        (["--summary", "--box", "1,2,3"], "x0,y0,x1,y1 in relative coordinates"),
    ],
)
def test_cli_bad_input_exits_2_with_the_message(trained, tmp_path, args, message):
    result = run_cli(trained.run, trained.tests[0].path, *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_refuses_files_without_gradients(trained, tmp_path):
    for name in ("model.tflite", "model.onnx"):
        fake = tmp_path / name
        fake.write_bytes(b"\0" * 16)
        result = run_cli(fake, trained.tests[0].path)
        assert result.exit_code == 2
        assert "explanations need gradients: pass the run directory with model.keras" in result.output
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text("{}")
    assert "need gradients" in run_cli(export, trained.tests[0].path).output


def test_cli_help_has_examples_and_api_names_stay_functions():
    from edge_cnn.cli import main

    result = CliRunner().invoke(main, ["explain", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "center-band" in result.output
    import edge_cnn.explain as explain
    import edge_cnn.explain.cli  # noqa: F401  (imports the submodules)

    assert callable(explain.gradcam) and callable(explain.cam) and callable(explain.summary)
