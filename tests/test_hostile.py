"""Hostile files and folders: crafted models, bombs, tampered exports, unwritable outputs, broken metadata.

Every case ends the same way: exit code 2, exactly one ``error:`` line that names the file and
the fix, no traceback, and the valid items of the same call still processed.
(detect and face have their own cases in ``test_hostile_detect_face.py``.)
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main
from edge_cnn.errors import ImageError, ManifestError, ModelFileError, OutputError
from edge_cnn.keras_file import ALLOWED_LAYERS, check_keras_file, load_keras_model

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result, *needles: str) -> str:
    """Exit 2 through the CLI's error path (no traceback), one ``error:`` line holding every needle."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def copy_run(tiny_run_dir: Path, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(tiny_run_dir, tmp_path / name))


# --- crafted Keras files -----------------------------------------------------------------------


def rewrite_config(path: Path, edit) -> Path:
    """Apply ``edit`` to the config.json inside the .keras archive at ``path``, in place."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def exec_lambda(marker: Path) -> dict:
    """The published exploit: a Lambda whose function is builtins.exec, called on a constant string."""
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "module": "keras.layers", "class_name": "Lambda", "registered_name": None, "name": "evil",
        "config": {"name": "evil", "trainable": True, "dtype": "float32",
                   "function": {"module": "builtins", "class_name": "function", "config": "exec",
                                "registered_name": "function"},
                   "function_type": "function", "module": "builtins", "output_shape": None,
                   "output_shape_type": "raw", "output_shape_module": None, "arguments": {}},
        "inbound_nodes": [[["_CONSTANT_VALUE", -1, code, {}]]],
    }


def plant_exploit(model_path: Path, marker: Path) -> Path:
    return rewrite_config(model_path, lambda config: config["config"]["layers"].append(exec_lambda(marker)))


@pytest.fixture
def evil_run(tiny_run_dir, tmp_path) -> tuple[Path, Path]:
    """A finished run whose model.keras carries the exec Lambda; the marker it would write."""
    run = copy_run(tiny_run_dir, tmp_path, "evil_run")
    marker = tmp_path / "marker"
    plant_exploit(run / "model.keras", marker)
    return run, marker


def test_the_crafted_model_really_runs_code_in_plain_tf_keras_safe_mode(evil_run):
    """The exploit is real: tf_keras' own safe_mode executes it (so the refusals below matter)."""
    from edge_cnn.keras import keras

    run, marker = evil_run
    with pytest.raises(Exception):
        keras.models.load_model(run / "model.keras", safe_mode=True)
    assert marker.read_text() == "pwned"


def test_safe_loader_refuses_the_exec_lambda_without_running_it(evil_run):
    run, marker = evil_run
    with pytest.raises(ModelFileError, match="layer 'evil' is a Lambda layer, which runs code"):
        load_keras_model(run / "model.keras")
    assert not marker.exists()


@pytest.mark.parametrize(
    "verb",
    [
        lambda run, tmp: ["evaluate", run, "--data", tmp / "data"],
        lambda run, tmp: ["export", run, "--out", tmp / "exp"],
        lambda run, tmp: ["export", run / "model.keras", "--preprocess", run / "preprocess.json", "--out", tmp / "e2"],
        lambda run, tmp: ["explain", run, "--split", "test", "--out", tmp / "x"],
        lambda run, tmp: ["bench", run / "model.keras", "--runs", "2", "--warmup", "1"],
        lambda run, tmp: ["train", "--data", tmp / "data", "--model", "small_convnet", "--img-size", "32",
                          "--weights", run / "model.keras", "--epochs", "1", "--out", tmp / "t"],
    ],
    ids=["evaluate", "export", "export-file", "explain", "bench-keras", "train-weights"],
)
def test_every_verb_that_takes_a_keras_file_refuses_the_exploit(evil_run, square_images, tmp_path, verb):
    run, marker = evil_run
    shutil.copytree(square_images, tmp_path / "data")
    result = invoke(*verb(run, tmp_path))
    assert_refused(result, "model.keras", "Lambda", "README")
    assert not marker.exists()


def test_bench_of_an_export_refuses_the_exploit_in_its_keras_baseline(evil_run, tiny_run_dir, tmp_path):
    """bench EXPORT loads ../model.keras on its own for the Keras baseline: refused there too,
    while the ONNX artifact beside it is still measured."""
    from edge_cnn.export import export

    good = copy_run(tiny_run_dir, tmp_path, "good")
    export(good, format=["onnx"])
    run, marker = evil_run
    shutil.rmtree(run / "export", ignore_errors=True)
    shutil.copytree(good / "export", run / "export")
    result = invoke("bench", run / "export", "--runs", "2", "--warmup", "1")
    assert_refused(result, "1 of 2 configurations failed", "Lambda")
    assert "model_fp32.onnx" in result.output and "OK" in result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda c: c["config"]["layers"][1].update(class_name="MyCustomLayer"), "class 'MyCustomLayer', which is not on the allow-list"),
        (lambda c: c["config"]["layers"][1].update(class_name="TFOpLambda"), "is a TFOpLambda layer"),
        (lambda c: c["config"]["layers"][1].update(module="os.path"), "names module 'os.path'"),
        (lambda c: c["config"]["layers"][1]["inbound_nodes"][0].append(["_CONSTANT_VALUE", -1, "x", {}]), "_CONSTANT_VALUE"),
    ],
    ids=["unknown-class", "tfoplambda", "foreign-module", "constant-node"],
)
def test_config_check_refuses_each_rule(tiny_run_dir, tmp_path, edit, reason):
    path = Path(shutil.copy(tiny_run_dir / "model.keras", tmp_path / "m.keras"))
    rewrite_config(path, edit)
    with pytest.raises(ModelFileError, match=re.escape(reason)):
        check_keras_file(path)


def test_models_the_toolkit_writes_pass_the_check(tiny_run_dir):
    config = check_keras_file(tiny_run_dir / "model.keras")
    assert {layer["class_name"] for layer in config["config"]["layers"]} <= ALLOWED_LAYERS


def test_every_layer_type_the_zoo_builds_is_allowed():
    """A new zoo layer type must be added to the allow-list, or models built with it could not be loaded."""
    used = set()
    for source in (REPO / "edge_cnn" / "zoo").glob("*.py"):
        used |= set(re.findall(r"layers\.([A-Z][A-Za-z0-9]+)\(", source.read_text()))
    used |= set(re.findall(r"layers\.([A-Z][A-Za-z0-9]+)\(", (REPO / "edge_cnn" / "train" / "model.py").read_text()))
    assert used and used <= ALLOWED_LAYERS, sorted(used - ALLOWED_LAYERS)


@pytest.mark.slow
@pytest.mark.heavy  # builds all 40 zoo models (3 min on 2 cores); the source scan above covers every layer type fast
def test_every_zoo_model_passes_the_check_after_saving(tmp_path):
    from edge_cnn.keras import keras
    from edge_cnn.zoo import build, list_models, model_info

    for name in list_models():
        info = model_info(name)
        size = max(info.min_input_size, 32)
        model = build(name, input_shape=(size, size, info.default_input_shape[2]), num_classes=2)
        assert {type(layer).__name__ for layer in model.layers} <= ALLOWED_LAYERS, name
        keras.backend.clear_session()
    model.save(tmp_path / "last.keras")
    check_keras_file(tmp_path / "last.keras")


def test_truncated_and_foreign_files_are_one_line_errors(tiny_run_dir, tmp_path):
    truncated = tmp_path / "t.keras"
    truncated.write_bytes((tiny_run_dir / "model.keras").read_bytes()[:300])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_keras_model(truncated)
    other = tmp_path / "m.pkl"
    other.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelFileError, match="not a .keras archive"):
        load_keras_model(other)


# --- images ------------------------------------------------------------------------------------


def test_decompression_bomb_is_refused_for_that_image_only(bomb, exported, square_images):
    assert bomb.stat().st_size < 1_000_000
    good = sorted(square_images.glob("red/*.png"))[:2]
    result = invoke("predict", exported / "export", good[0], bomb, good[1])
    assert_refused(result, "bomb.png is over Pillow's decompression-bomb limit", "the other 2 input(s) were predicted")
    assert all(str(path) in result.output for path in good)


def test_pixel_limit_applies_per_image_and_is_configurable(tmp_path, monkeypatch):
    from edge_cnn.preprocess import PreprocessSpec

    image = tmp_path / "big.png"
    Image.new("RGB", (100, 50)).save(image)
    spec = PreprocessSpec(8, 8)
    assert spec.load_image(image).shape == (8, 8, 3)
    monkeypatch.setenv("EDGECNN_MAX_IMAGE_PIXELS", "4999")
    with pytest.raises(ImageError, match=r"big.png is 100x50 pixels, over the limit of 4,999 pixels"):
        spec.load_image(image)


def test_training_scan_skips_an_oversized_image_with_its_reason(tmp_path, monkeypatch):
    from edge_cnn.data.folder import image_problem

    image = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(image)
    monkeypatch.setenv("EDGECNN_MAX_IMAGE_PIXELS", "100")
    assert "over the limit of 100 pixels" in image_problem(image)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from edge_cnn.preprocess import PreprocessSpec

    spec = PreprocessSpec(2, 2, color="grayscale")
    grey16 = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 65535], [32896, 257]], np.uint16)).save(grey16)
    assert spec.load_image(grey16)[..., 0].tolist() == [[0, 255], [128, 1]]
    fraction = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 1.0], [0.5, 0.25]], np.float32), mode="F").save(fraction)
    assert spec.load_image(fraction)[..., 0].tolist() == [[0, 255], [128, 64]]
    wide = tmp_path / "w.tif"
    Image.fromarray(np.array([[0.0, 1000.0], [500.0, 250.0]], np.float32), mode="F").save(wide)
    assert spec.load_image(wide)[..., 0].tolist() == [[0, 255], [128, 64]]
    assert spec.load_image(np.array([[0, 65535], [32896, 257]], np.uint16))[..., 0].tolist() == [[0, 255], [128, 1]]


# --- outputs that cannot be written -------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    """Tests run as root, where permissions do not stop writes: a file stands where a folder must go."""
    path = tmp_path / "occupied"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "verb",
    [
        lambda run, data, out: ["train", "--data", data, "--model", "small_convnet", "--img-size", "32", "--epochs", "1", "--out", out],
        lambda run, data, out: ["export", run, "--out", out],
        lambda run, data, out: ["explain", run, "--split", "test", "--out", out],
        lambda run, data, out: ["bench", run / "model.keras", "--runs", "2", "--json", out / "b.json"],
        lambda run, data, out: ["zoo", "--family", "lenet", "--md", out / "zoo.md"],
    ],
    ids=["train", "export", "explain", "bench-json", "zoo-md"],
)
def test_unwritable_output_is_refused_before_any_work(tiny_run_dir, square_images, tmp_path, a_file, verb):
    run = copy_run(tiny_run_dir, tmp_path)
    result = invoke(*verb(run, square_images, a_file))
    assert_refused(result, str(a_file))
    assert a_file.read_text() == "not a folder"


def test_bench_keeps_its_table_when_the_report_write_fails(tiny_run_dir, tmp_path, monkeypatch):
    """A full disk after measuring: the table is printed, then one error line naming the file."""
    import edge_cnn.io

    real_replace = edge_cnn.io.os.replace

    def disk_full(source, target):
        if str(target).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(edge_cnn.io.os, "replace", disk_full)
    result = invoke("bench", tiny_run_dir / "model.keras", "--runs", "2", "--warmup", "1", "--json", tmp_path / "b.json")
    assert_refused(result, "b.json", "No space left on device")
    assert "model.keras" in result.output and "p50" in result.output
    assert not (tmp_path / "b.json").exists() and not list(tmp_path.glob(".b.*"))


def test_a_failed_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import edge_cnn.io
    from edge_cnn.io import write_json

    path = write_json(tmp_path / "r.json", {"v": 1})
    monkeypatch.setattr(edge_cnn.io.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OutputError, match="r.json"):
        write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# --- exports: tampered, stale, escaping -----------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tmp_path_factory) -> Path:
    """A run copy with a TFLite + ONNX fp32 export. Read-only for tests: copy it before editing."""
    from edge_cnn.export import export

    run = Path(shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("exported") / "run"))
    export(run)
    return run


@pytest.fixture
def export_copy(exported, tmp_path) -> Path:
    return Path(shutil.copytree(exported / "export", tmp_path / "export"))


def edit_manifest(folder: Path, edit) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_bench_refuses_an_artifact_edited_after_export(export_copy):
    path = export_copy / "model_fp32.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = invoke("bench", export_copy, "--runs", "2", "--no-keras")
    assert_refused(result, "model_fp32.onnx does not match its manifest", "re-export")
    result = invoke("bench", path, "--runs", "2")
    assert_refused(result, "model_fp32.onnx does not match its manifest")


def test_a_killed_re_export_leaves_no_manifest_to_trust(exported, tmp_path, monkeypatch):
    """Export removes the old manifest first and writes the new one last: after a kill half-way,
    bench and predict refuse the folder instead of running its mix of new and stale files."""
    from edge_cnn.export import exporter

    run = Path(shutil.copytree(exported, tmp_path / "run"))
    real_run_job = exporter._run_job

    def killed_after_first(job, *args):
        if job.format == "onnx":
            raise KeyboardInterrupt
        return real_run_job(job, *args)

    monkeypatch.setattr(exporter, "_run_job", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        exporter.export(run, format=["tflite", "onnx"])
    assert not (run / "export" / "manifest.json").exists() and (run / "export" / "model_fp32.onnx").exists()
    assert_refused(invoke("bench", run / "export", "--runs", "2"), "no manifest")
    assert_refused(invoke("predict", run / "export", __file__), "no manifest")


@pytest.mark.parametrize("escape", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.onnx"])
def test_manifest_paths_leading_outside_the_folder_are_refused_untouched(export_copy, escape, monkeypatch):
    import edge_cnn.manifest

    edit_manifest(export_copy, lambda data: data["artifacts"][0].update(path=escape))
    touched = []
    monkeypatch.setattr(edge_cnn.manifest, "sha256_file", lambda path: touched.append(path))
    for verb in (["predict", export_copy, __file__], ["bench", export_copy, "--no-keras"]):
        line = assert_refused(invoke(*verb), "must be relative to the export folder", "re-export")
        assert "bytes" not in line
    assert not touched


def test_a_link_leading_outside_the_folder_is_refused(export_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(export_copy / "model_fp32.onnx", outside)
    (export_copy / "model_fp32.onnx").unlink()
    (export_copy / "model_fp32.onnx").symlink_to(outside)
    with pytest.raises(ManifestError, match="leads outside its folder"):
        from edge_cnn.manifest import load_manifest

        manifest = load_manifest(export_copy)
        [manifest.verified_path(a) for a in manifest.artifacts]


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d.update(labels=5), "labels must be a JSON list"),
        (lambda d: d.update(artifacts={"a": 1}), "artifacts must be a JSON list"),
        (lambda d: d["artifacts"][0].update(bytes="12"), "bytes '12' must be a whole number"),
        (lambda d: d["artifacts"][0]["inputs"][0].update(shape="abc"), "input shape must be a JSON list"),
        (lambda d: d["artifacts"][0].update(sha256=["x"]), "sha256 must be a string"),
        (lambda d: d["artifacts"][0].update(parity="fast"), "parity must be a JSON object"),
        (lambda d: d["artifacts"][0].pop("format"), "lacks 'format'"),
    ],
    ids=["labels", "artifacts", "bytes", "shape", "sha256", "parity", "missing"],
)
def test_wrongly_typed_manifest_fields_are_one_line_errors(export_copy, edit, needle):
    edit_manifest(export_copy, edit)
    assert_refused(invoke("predict", export_copy, __file__), "manifest.json is invalid", needle, "re-export")


# --- metadata and options -------------------------------------------------------------------------


@pytest.mark.parametrize("content", ['["red", ', '{"a": 1}', '["red", 3]', '["red", "red"]'])
def test_broken_labels_json_is_one_line_error(tiny_run_dir, tmp_path, content):
    run = copy_run(tiny_run_dir, tmp_path)
    (run / "labels.json").write_text(content)
    assert_refused(invoke("export", run, "--out", tmp_path / "e"), "labels.json")


@pytest.mark.parametrize("recipe", ["- a\n- b\n", "epochs: [1, 2]\n", "not_a_flag: 1\n", "epochs: 1\n  bad: :\n"])
def test_broken_recipes_are_one_line_errors(tmp_path, square_images, recipe):
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    result = invoke("train", "--recipe", path, "--data", square_images, "--out", tmp_path / "t")
    line = assert_refused(result, "train:" if recipe.startswith(("epochs: [", "not_a")) else "r.yaml")
    assert "--help" in line or "r.yaml" in line
    assert not (tmp_path / "t").exists()


def test_explain_exits_2_after_explaining_the_readable_images(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    good = [Path(line.split(",")[0]) for line in (run / "splits" / "test.csv").read_text().splitlines()[1:3]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = invoke("explain", run, good[0], broken, good[1], "--out", tmp_path / "x")
    assert_refused(result, "broken.png cannot be read", "replace or remove", "the other 2 input(s) were written")
    assert len(list((tmp_path / "x").glob("*_gradcam.png"))) + len(list((tmp_path / "x").glob("*_cam.png"))) == 2


def test_prune_outside_zero_one_is_refused_before_any_fine_tuning(tiny_run_dir, tmp_path, monkeypatch):
    from edge_cnn.export import optimize

    monkeypatch.setattr(optimize, "_fine_tune", lambda *a, **k: pytest.fail("fine-tuning started"))
    run = copy_run(tiny_run_dir, tmp_path)
    assert_refused(invoke("export", run, "--prune", "2"), "--prune 2", "between 0 and 1")
    assert_refused(invoke("export", run, "--cluster", "1"), "--cluster 1", "at least 2")


@pytest.mark.parametrize("spec", ['{"height": "tall", "width": 8}', '{"height": 8, "width": 8, "mean": "x"}', "[1, 2]"])
def test_broken_preprocess_json_is_one_line_error(tiny_run_dir, tmp_path, spec):
    run = copy_run(tiny_run_dir, tmp_path)
    (run / "preprocess.json").write_text(spec)
    assert_refused(invoke("export", run, "--out", tmp_path / "e"), "preprocess")
