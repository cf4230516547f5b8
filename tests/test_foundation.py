"""The foundation: Keras 2 everywhere, the CLI grammar, atomic writes, PreprocessSpec, manifest."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main
from edge_cnn.preprocess import parse_size
from edge_cnn.errors import EdgeCNNError, ImageError, ManifestError
from edge_cnn.io import atomic_path, sha256_file, write_json
from edge_cnn.manifest import Artifact, Manifest, Quantization, TensorSpec, load_manifest
from edge_cnn.preprocess import PreprocessSpec


def test_tfmot_keeps_keras_2():
    """After tensorflow_model_optimization is imported, tf.keras is still tf_keras (Keras 2)."""
    code = (
        "import edge_cnn.keras as k, tensorflow_model_optimization as tfmot, tf_keras, tensorflow as tf;"
        "assert tf.keras.Model is tf_keras.Model is k.keras.Model;"
        "assert tf_keras.__version__.startswith('2.'), tf_keras.__version__;"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_keras_module_refuses_keras_3_order():
    """tf.keras resolved to Keras 3 before our module is detected instead of silently mixing Keras versions."""
    code = "import tensorflow as tf; tf.keras.Model; import edge_cnn.keras"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "TF_USE_LEGACY_KERAS" in result.stderr


def test_help_lists_verbs_and_does_not_import_tensorflow():
    """`edgecnn --help` and every verb's `--help` answer without TensorFlow (a new user's first commands)."""
    code = (
        "import sys; from click.testing import CliRunner; from edge_cnn.cli import VERBS, main\n"
        "r = CliRunner().invoke(main, ['--help']); print(r.output)\n"
        "for verb in VERBS:\n"
        "    v = CliRunner().invoke(main, [verb, '--help']); assert v.exit_code == 0, (verb, v.output)\n"
        "    assert 'Examples' in v.output or 'example' in v.output.lower(), verb + ' --help shows no example'\n"
        "    assert 'tensorflow' not in sys.modules, verb + ' --help imported TensorFlow'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zoo" in result.stdout and "Examples" in result.stdout


def test_unknown_verb_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output


@pytest.mark.parametrize("text, expected", [("128x64", (128, 64)), ("96", (96, 96)), ("32X16", (32, 16))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "axb", "0x10", "1x2x3"])
def test_parse_size_rejects(text):
    with pytest.raises(EdgeCNNError, match="HxW"):
        parse_size(text)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".onnx" and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "saved_model"
    (target / "old").mkdir(parents=True)
    with atomic_path(target) as tmp:
        (tmp / "variables").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["variables"]


def test_preprocess_spec_pipeline(tmp_path):
    spec = PreprocessSpec(height=4, width=6, color="rgb", scale=1 / 255, mean=(0.5,), std=(0.25,))
    image = np.full((8, 12, 3), 255, np.uint8)
    path = tmp_path / "white.png"
    Image.fromarray(image).save(path)
    batch = spec([path, image])
    assert batch.shape == (2, 4, 6, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, (1.0 - 0.5) / 0.25)
    assert spec.value_range() == pytest.approx(((0 - 0.5) / 0.25, (1 - 0.5) / 0.25))
    grey = PreprocessSpec(height=4, width=6, color="grayscale", layout="NCHW")
    assert grey(path).shape == (1, 1, 4, 6)
    assert grey.input_shape == (1, 4, 6)


@pytest.mark.parametrize("color, shape", [("rgb", (4, 6, 3)), ("grayscale", (4, 6)), ("grayscale", (4, 6, 1))])
def test_load_image_fast_path_equals_the_pil_path(color, shape):
    """A uint8 array already at the spec's size skips PIL and gives what PIL would; anything else
    (another size, float values, another channel count) still goes through PIL."""
    spec = PreprocessSpec(height=4, width=6, color=color)
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    through_pil = np.asarray(Image.fromarray(pixels.squeeze()).convert("RGB" if color == "rgb" else "L"))
    fast = spec.load_image(pixels)
    assert fast.shape == spec.input_shape and fast.dtype == np.uint8
    np.testing.assert_array_equal(fast, through_pil.reshape(spec.input_shape))
    np.testing.assert_array_equal(spec.load_image(pixels.astype(np.float32)), fast)
    bigger = np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)
    assert spec.load_image(bigger).shape == spec.input_shape
    if color == "grayscale":
        assert spec.load_image(np.stack([pixels.reshape(4, 6)] * 3, axis=-1)).shape == (4, 6, 1)


def test_preprocess_spec_round_trip_and_validation(tmp_path):
    spec = PreprocessSpec(height=128, width=64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    spec.save(tmp_path / "preprocess.json")
    assert PreprocessSpec.load(tmp_path / "preprocess.json") == spec
    with pytest.raises(EdgeCNNError, match="color"):
        PreprocessSpec(height=4, width=4, color="cmyk")
    with pytest.raises(EdgeCNNError, match="mean has 2"):
        PreprocessSpec(height=4, width=4, mean=(0.1, 0.2))
    with pytest.raises(EdgeCNNError, match="unknown keys"):
        PreprocessSpec.from_dict({"height": 4, "width": 4, "colour": "rgb"})


def test_preprocess_normalize_same_on_tf_tensors():
    """The tf.data pipeline and the runtime share ``normalize``: same numbers on both kinds of input."""
    import edge_cnn.keras  # noqa: F401  (TensorFlow with Keras 2)
    import tensorflow as tf

    spec = PreprocessSpec(height=2, width=2, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    pixels = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20
    np.testing.assert_allclose(spec.normalize(tf.constant(pixels)).numpy(), spec.normalize(pixels), atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [("missing.png", "does not exist"), ("bad.png", "cannot be read"), (np.zeros((4, 4, 2)), "cannot be converted")],
)
def test_preprocess_bad_images(tmp_path, bad, message):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    if isinstance(bad, str):
        bad = tmp_path / bad
    with pytest.raises(ImageError, match=message):
        PreprocessSpec(height=4, width=4)(bad)


def _manifest(tmp_path) -> Manifest:
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"not really a model")
    artifact = Artifact(
        path=model.name,
        format="tflite",
        precision="int8",
        sha256=sha256_file(model),
        bytes=model.stat().st_size,
        gzip_bytes=10,
        inputs=[TensorSpec("image", [-1, 32, 32, 3], "int8", layout="NHWC", quantization=Quantization(0.0039, -128))],
        outputs=[TensorSpec("probs", [-1, 2], "int8", meaning="probabilities", quantization=Quantization(0.0039, -128))],
    )
    return Manifest(["red", "blue"], PreprocessSpec(32, 32), "abc", [artifact], created_by="test")


def test_manifest_round_trip(tmp_path):
    manifest = _manifest(tmp_path)
    manifest.save(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.to_dict() == manifest.to_dict()
    assert loaded.artifact_path(loaded.artifacts[0]) == tmp_path / "model_int8.tflite"
    assert loaded.find(format="tflite", precision="int8") == loaded.artifacts


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema=2), "schema"),
        (lambda d: d.pop("labels"), "labels"),
        (lambda d: d["artifacts"][0].update(format="pt"), "format"),
        (lambda d: d["artifacts"][0]["inputs"][0].update(quantization=None), "quantization"),
    ],
)
def test_manifest_validation(tmp_path, edit, message):
    data = _manifest(tmp_path).to_dict()
    edit(data)
    write_json(tmp_path / "manifest.json", data)
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path)


def test_manifest_missing_or_not_json(tmp_path):
    with pytest.raises(ManifestError, match="edgecnn export"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)


def test_recipe_keys_are_flags_and_flags_win(tmp_path):
    import click

    from edge_cnn.options import recipe_option

    @click.command()
    @recipe_option
    @click.option("--epochs", type=int, default=1)
    @click.option("--img-size", default="32x32")
    def verb(epochs, img_size):
        click.echo(json.dumps({"epochs": epochs, "img_size": img_size}))

    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\nimg-size: 128x64\n")
    result = CliRunner().invoke(verb, ["--recipe", str(recipe)])
    assert json.loads(result.output) == {"epochs": 7, "img_size": "128x64"}
    result = CliRunner().invoke(verb, ["--recipe", str(recipe), "--epochs", "3"])
    assert json.loads(result.output) == {"epochs": 3, "img_size": "128x64"}
    recipe.write_text("epochs: 7\nlearning_rat: 0.1\n")
    result = CliRunner().invoke(verb, ["--recipe", str(recipe)])
    assert result.exit_code == 2 and "learning_rat" in result.output


def test_every_verb_loads_and_has_examples():
    """The verb table and the modules agree: each verb imports, and its help shows examples."""
    from edge_cnn.cli import VERBS

    for verb in VERBS:
        result = CliRunner().invoke(main, [verb, "--help"])
        assert result.exit_code == 0, (verb, result.output)
        assert "Example" in result.output, verb


def test_native_output_is_held_and_shown_again_when_the_block_fails():
    """What C++ writes to descriptor 2 stays off the terminal, unless the block fails (then it is the
    failure's context) or EDGECNN_VERBOSE is set; Python's own stderr lines still get through."""
    code = (
        "import os, sys\n"
        "from edge_cnn.quiet import command_output\n"
        "with command_output():\n"
        "    os.write(2, b'native chatter\\n'); print('our line', file=sys.stderr)\n"
        "try:\n"
        "    with command_output():\n"
        "        os.write(2, b'native context\\n'); raise RuntimeError('boom')\n"
        "except RuntimeError:\n"
        "    pass\n"
    )
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == ["our line", "native context"]
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "EDGECNN_VERBOSE": "1"})
    assert loud.stderr.splitlines() == ["native chatter", "our line", "native context"]


def test_tensorflow_python_warnings_are_shown_with_verbose_only():
    """A study that converts model after model makes tf.function retrace, and TensorFlow logs a warning a
    user can do nothing about; --verbose (EDGECNN_VERBOSE) shows it again."""
    code = (
        "from edge_cnn.keras import tf\n"
        "tf.get_logger().warning('retracing chatter')\n"
        "tf.get_logger().error('a real error')\n"
    )
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "retracing chatter" not in quiet.stderr and "a real error" in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "EDGECNN_VERBOSE": "1"})
    assert "retracing chatter" in loud.stderr


def test_a_table_with_a_long_text_column_keeps_every_column_in_sight(capsys, monkeypatch):
    """A study table (a method name, six numbers, a long note) at 100 columns: rich would squeeze the first
    column and a number column out of sight if only the first one could wrap; every heading and every
    method must be printed, on lines no wider than the terminal."""
    from edge_cnn.report import print_table

    monkeypatch.setenv("COLUMNS", "100")
    columns = ["Method", "Accuracy (%)", "Std (pp)", "TAR@FAR 1e-3 (%)", "AUC", "ms per face", "Model size (MB)", "Note"]
    rows = [dict(zip(columns, values)) for values in (
        ("Raw pixels (48x60 grey, cosine)", 62.33, 2.51, 1.5, 0.6705, 0.378, 0, ""),
        ("Eigenfaces (PCA 100, whitened, cosine)", 69.7, 2.48, 8, 0.7698, 0.37, 1.164,
         "PCA fitted per fold on the other folds' images"),
        ("dlib ResNet (face_recognition)", 97.97, 0.55, 74.9, 0.9969, 105.7, 22.47,
         "whole crop as the face box; minus Euclidean distance"))]
    print_table(rows, columns, title="baselines")
    output = capsys.readouterr().out
    assert all(name in output for name in ("Method", "AUC", "Raw pixels", "Eigenfaces", "dlib ResNet", "0.7698"))
    assert max(len(line) for line in output.splitlines()) <= 100
