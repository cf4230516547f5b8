"""The embedded runtime (edge_cnn.runtime) and `edgecnn predict`.

The export folder is built here (tf2onnx + TFLiteConverter, manifest via edge_cnn.manifest) from the
`tiny_run_dir` fixture, in this (TensorFlow-allowed) process; only the subprocess check is TF-free.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError, ImageError, ManifestError, ModelFileError
from edge_cnn.io import gzip_size, sha256_file, write_bytes
from edge_cnn.manifest import Artifact, Manifest, Quantization, TensorSpec
from edge_cnn.run_dir import RunDir
from edge_cnn.runtime import Prediction, Predictor, open_backend
from edge_cnn.numerics import quantize

REPO = Path(__file__).resolve().parents[1]


# --- fixtures: an export folder written the way `edgecnn export` writes one ---------------------

def _tensor_specs(infos, meaning_of=None, layout=None) -> list[TensorSpec]:
    return [
        TensorSpec(
            name=info.name,
            shape=list(info.shape),
            dtype=info.dtype,
            layout=layout,
            meaning=meaning_of(info) if meaning_of else None,
            quantization=Quantization(*info.quantization) if info.quantization else None,
        )
        for info in infos
    ]


def _artifact(folder: Path, name: str, precision: str, meaning_of) -> Artifact:
    path = folder / name
    backend = open_backend(path)
    return Artifact(
        path=name,
        format=path.suffix[1:],
        precision=precision,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        gzip_bytes=gzip_size(path),
        inputs=_tensor_specs(backend.inputs, layout="NHWC"),
        outputs=_tensor_specs(backend.outputs, meaning_of),
    )


def _tflite(model, tf, representative=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def env(tiny_run_dir, tmp_path_factory):
    """Export folders (fp32 ONNX, fp32 + int8 TFLite; and an embedding+logits TFLite) and Keras references."""
    import tf2onnx

    from edge_cnn.keras import keras, layers, tf

    run = RunDir(tiny_run_dir)
    spec, labels = run.preprocess(), run.labels()
    model = keras.models.load_model(run.model_path)
    root = tmp_path_factory.mktemp("runtime")

    export = root / "export"
    export.mkdir()
    signature = [tf.TensorSpec((None, *spec.input_shape), tf.float32, name="image")]
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=13, output_path=str(export / "model_fp32.onnx"))
    write_bytes(export / "model_fp32.tflite", _tflite(model, tf))
    train_paths = [path for path, _ in run.read_split("train")]
    write_bytes(export / "model_int8.tflite", _tflite(model, tf, lambda: ([spec(path)] for path in train_paths)))
    probabilities = lambda info: "probabilities"  # noqa: E731
    artifacts = [
        _artifact(export, "model_fp32.onnx", "fp32", probabilities),
        _artifact(export, "model_fp32.tflite", "fp32", probabilities),
        _artifact(export, "model_int8.tflite", "int8", probabilities),
    ]
    Manifest(labels, spec, sha256_file(run.model_path), artifacts, created_by="tests/test_runtime.py").save(export)

    # A second export whose model outputs (embedding, logits): TFLite orders them its own way.
    gap = model.get_layer("head_pool").output
    dense = model.get_layer("predictions")
    logits_layer = layers.Dense(len(labels), name="logits")
    logits = logits_layer(gap)
    logits_layer.set_weights(dense.get_weights())
    two_heads = keras.Model(model.input, [gap, logits])
    embedding_export = root / "embedding_export"
    embedding_export.mkdir()
    write_bytes(embedding_export / "model_fp32.tflite", _tflite(two_heads, tf))
    meaning = lambda info: "logits" if info.shape[-1] == len(labels) else "embedding"  # noqa: E731
    artifact = _artifact(embedding_export, "model_fp32.tflite", "fp32", meaning)
    Manifest(labels, spec, sha256_file(run.model_path), [artifact]).save(embedding_export)

    fixed_batch_export = root / "fixed_batch_export"  # an ONNX model that takes exactly one image per call
    fixed_batch_export.mkdir()
    one = [tf.TensorSpec((1, *spec.input_shape), tf.float32, name="image")]
    tf2onnx.convert.from_keras(model, input_signature=one, opset=13, output_path=str(fixed_batch_export / "model_fp32.onnx"))
    artifact = _artifact(fixed_batch_export, "model_fp32.onnx", "fp32", probabilities)
    Manifest(labels, spec, sha256_file(run.model_path), [artifact]).save(fixed_batch_export)

    test_items = run.read_split("test")
    test_paths = [path for path, _ in test_items]
    x = spec(test_paths)
    embeddings, _ = two_heads.predict(x, verbose=0)
    return {
        "run": run,
        "spec": spec,
        "labels": labels,
        "export": export,
        "embedding_export": embedding_export,
        "fixed_batch_export": fixed_batch_export,
        "test_items": test_items,
        "test_paths": test_paths,
        "keras_probabilities": model.predict(x, verbose=0),
        "keras_embeddings": embeddings,
    }


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _entry(data: dict, name: str) -> dict:
    return next(a for a in data["artifacts"] if a["path"] == name)


def _spy_inputs(predictor: Predictor, monkeypatch) -> list[np.ndarray]:
    """Record every batch the predictor hands to its backend."""
    fed, run = [], predictor.backend.run

    def spy(batch):
        fed.append(np.array(batch))
        return run(batch)

    monkeypatch.setattr(predictor.backend, "run", spy)
    return fed


# --- no TensorFlow on the device ----------------------------------------------------------------

def test_runtime_and_predict_verb_import_no_tensorflow(env):
    image = env["test_paths"][0]
    script = f"""
import json, sys
from edge_cnn.runtime import Predictor
int8 = Predictor.load({str(env['export'])!r}, precision="int8")
first = int8.predict({image!r}).to_dict()
onnx = Predictor.load({str(env['export'])!r}, backend="onnx").predict([{image!r}, {image!r}])
from click.testing import CliRunner
from edge_cnn.cli import main
result = CliRunner().invoke(main, ["predict", {str(env['export'])!r}, {image!r}, "--json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
print(json.dumps({{"heavy": heavy, "kind": int8.kind, "int8": first, "onnx": onnx[1].label,
                  "exit": result.exit_code, "cli": result.stdout}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["kind"] == "tflite int8"  # the fastest int8 artifact that passed parity
    expected = env["labels"][int(np.argmax(env["keras_probabilities"][0]))]
    assert report["int8"]["label"] == expected and report["onnx"] == expected
    assert report["exit"] == 0 and json.loads(report["cli"])["label"] == expected


# --- preprocessing is the trainer's -------------------------------------------------------------

def test_predictor_feeds_the_trainers_evaluation_batch(env, monkeypatch):
    from edge_cnn.data import make_dataset

    items = env["test_items"]
    x, _ = next(iter(make_dataset(items, env["spec"], num_classes=len(env["labels"]), batch_size=len(items))))
    predictor = Predictor.load(env["export"], backend="onnx", precision="fp32")
    fed = _spy_inputs(predictor, monkeypatch)
    predictor.predict([path for path, _ in items])
    assert len(fed) == 1 and fed[0].dtype == np.float32
    assert np.abs(fed[0] - x.numpy()).max() <= 1e-6
    assert np.array_equal(fed[0], env["spec"]([path for path, _ in items]))


def test_per_channel_normalization_reaches_the_model_unchanged(env, tmp_path, monkeypatch):
    """A spec with a mean and std per channel: the batch fed to the model is bit for bit the spec's
    normalize (quantized for the int8 input, through one pixel-table row per channel; float inputs get the
    spec's arithmetic itself)."""
    import dataclasses

    export = _copy(env["export"], tmp_path)
    spec = dataclasses.replace(env["spec"], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    _edit_manifest(export, lambda data: data.update(preprocess=spec.to_dict()))
    for precision in ("fp32", "int8"):
        predictor = Predictor.load(export, backend="tflite", precision=precision)
        if precision == "int8":
            assert predictor._pixel_table.shape == (3, 256)  # one row per channel
        else:
            assert predictor._pixel_table is None
        fed = _spy_inputs(predictor, monkeypatch)
        predictor.predict(env["test_paths"][:4])
        expected = predictor.quantize_input(spec(env["test_paths"][:4]))
        assert fed[-1].dtype == expected.dtype and np.array_equal(fed[-1], expected)
        assert np.array_equal(predictor.preprocess(env["test_paths"][:4]), spec(env["test_paths"][:4]))


def test_inputs_of_every_kind_give_the_same_answer(env):
    from PIL import Image

    predictor = Predictor.load(env["export"], backend="onnx", precision="fp32")
    path = env["test_paths"][0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    by_path = predictor.probabilities(path)
    for other in (Image.open(path), pixels, pixels.astype(np.float32), pixels[None]):
        np.testing.assert_allclose(predictor.probabilities(other), by_path, atol=1e-6)
    single = predictor.predict(path, topk=2)
    assert isinstance(single, Prediction) and single.path == path and len(single.topk) == 2
    assert [p.path for p in predictor.predict([pixels, path])] == [None, path]
    assert json.loads(json.dumps(single.to_dict()))["topk"][0] == {"label": single.label, "score": single.score}


# --- answers equal the Keras model's -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_fp32_predictions_equal_keras(env, backend):
    predictor = Predictor.load(env["export"], backend=backend, precision="fp32")
    probabilities = predictor.probabilities(env["test_paths"])
    np.testing.assert_allclose(probabilities, env["keras_probabilities"], atol=1e-4)
    predictions = predictor.predict(env["test_paths"], topk=2)
    assert [p.index for p in predictions] == list(np.argmax(env["keras_probabilities"], axis=1))
    assert [p.label for p in predictions] == [env["labels"][p.index] for p in predictions]
    assert all(p.topk[0] == (p.label, p.score) and p.topk[0][1] >= p.topk[1][1] for p in predictions)


def test_int8_input_quantization(env, monkeypatch):
    predictor = Predictor.load(env["export"], precision="int8")
    quant = predictor.artifact.inputs[0].quantization
    assert predictor.artifact.inputs[0].dtype == "int8" and quant is not None
    values = np.array([0.0, 0.25, 0.5, 0.77, 1.0, -3.0, 3.0], dtype=np.float32)
    got = predictor.quantize_input(values)
    expected = np.clip(np.round(values / quant.scale) + quant.zero_point, -128, 127)
    assert got.dtype == np.int8 and np.array_equal(got, expected.astype(np.int8))
    assert got[-2] == -128 and got[-1] == 127  # out-of-range values clip
    assert quantize(np.array([-1.0, 300.0]), 1.0, 0, "uint8").tolist() == [0, 255]
    fed = _spy_inputs(predictor, monkeypatch)
    predictor.predict(env["test_paths"][:3])
    assert fed[0].dtype == np.int8
    assert np.array_equal(fed[0], quantize(env["spec"](env["test_paths"][:3]), quant.scale, quant.zero_point, "int8"))


def test_int8_predictions_mostly_agree_with_keras(env):
    predictor = Predictor.load(env["export"], precision="int8")
    probabilities = predictor.probabilities(env["test_paths"])
    reference = env["keras_probabilities"]
    agreement = np.mean(np.argmax(probabilities, axis=1) == np.argmax(reference, axis=1))
    assert agreement >= 0.85
    assert np.abs(probabilities - reference).max() < 0.15
    assert probabilities.dtype == np.float32 and np.all((probabilities >= 0) & (probabilities <= 1))


def test_embedding_and_logits_outputs(env):
    predictor = Predictor.load(env["embedding_export"])
    vectors = predictor.embed(env["test_paths"])
    reference = env["keras_embeddings"] / np.linalg.norm(env["keras_embeddings"], axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)
    assert predictor.embed(env["test_paths"][0]).shape == (reference.shape[1],)
    # the model outputs logits: softmax makes them the Keras model's probabilities
    np.testing.assert_allclose(predictor.probabilities(env["test_paths"]), env["keras_probabilities"], atol=1e-4)
    with pytest.raises(EdgeCNNError, match="no embedding output"):
        Predictor.load(env["export"], backend="onnx").embed(env["test_paths"][0])


def test_fixed_batch_model_is_fed_one_image_at_a_time(env, monkeypatch):
    predictor = Predictor.load(env["fixed_batch_export"])
    fed = _spy_inputs(predictor, monkeypatch)
    probabilities = predictor.probabilities(env["test_paths"][:3])
    assert [batch.shape[0] for batch in fed] == [1, 1, 1]
    np.testing.assert_allclose(probabilities, env["keras_probabilities"][:3], atol=1e-4)


# --- choosing the artifact ------------------------------------------------------------------------

VNNI_CPU = {"model": "Test CPU with VNNI", "flags": ["avx2", "avx512f", "avx512_vnni"]}
AVX2_CPU = {"model": "Test CPU without VNNI", "flags": ["avx2"]}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a given CPU: ``cpu(VNNI_CPU)``."""
    import edge_cnn.machine

    def pretend(info):
        monkeypatch.setattr(edge_cnn.machine, "cpu_info", lambda cpuinfo=None: dict(info))

    return pretend


def test_artifact_choice(env, tmp_path, cpu):
    cpu(VNNI_CPU)  # the default rule takes int8 here (see test_no_measurement_rule_follows_the_cpu)
    folder = _copy(env["export"], tmp_path)
    assert Predictor.load(folder).kind == "tflite int8"

    def failed_int8(onnx_ms, tflite_ms):
        def edit(data):
            _entry(data, "model_int8.tflite")["status"] = "FAILED"
            _entry(data, "model_fp32.onnx")["parity"] = {"latency_p50_ms": onnx_ms}
            _entry(data, "model_fp32.tflite")["parity"] = {"latency_p50_ms": tflite_ms}
        return edit

    _edit_manifest(folder, failed_int8(2.0, 1.0))
    assert Predictor.load(folder).kind == "tflite fp32"  # int8 failed parity: the fastest fp32
    _edit_manifest(folder, failed_int8(1.0, 2.0))
    assert Predictor.load(folder).kind == "onnx fp32"
    with pytest.raises(ManifestError, match="FAILED"):
        Predictor.load(folder, precision="int8")
    _edit_manifest(folder, lambda data: _entry(data, "model_int8.tflite").update(status="WARN"))
    assert Predictor.load(folder).kind == "onnx fp32"  # the default takes only artifacts that passed
    assert Predictor.load(folder, precision="int8").kind == "tflite int8"  # asked for explicitly
    with pytest.raises(ManifestError, match="no int8 onnx"):
        Predictor.load(folder, backend="onnx", precision="int8")
    with pytest.raises(EdgeCNNError, match="CPU only"):
        Predictor.load(folder, backend="tflite", provider="cuda")
    assert Predictor.load(folder / "model_fp32.tflite").kind == "tflite fp32"  # a file of the export
    with pytest.raises(EdgeCNNError, match="fp32 artifact, not int8"):
        Predictor.load(folder / "model_fp32.tflite", precision="int8")
    run_like = tmp_path / "run"
    shutil.copytree(env["export"], run_like / "export")
    assert Predictor.load(run_like).model_path.parent == run_like / "export"


# --- one predictor, many threads --------------------------------------------------------------------

@pytest.mark.parametrize("backend,precision", [("onnx", "fp32"), ("tflite", "int8"), ("tflite", "fp32")])
def test_one_predictor_shared_by_8_threads(env, backend, precision):
    predictor = Predictor.load(env["export"], backend=backend, precision=precision, threads=1)
    paths = env["test_paths"]
    jobs = [[paths[(t + j) % len(paths)] for j in range(1 + (t + round_) % 3)] for t in range(8) for round_ in range(5)]
    serial = [predictor.probabilities(job) for job in jobs]  # batch sizes 1..3 alternate: LiteRT resizes
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(thread: int) -> None:
        start.wait()
        try:
            for index in range(thread * 5, thread * 5 + 5):
                results[index] = predictor.probabilities(jobs[index])
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, expected in enumerate(serial):
        np.testing.assert_allclose(results[index], expected, atol=1e-6)


# --- bad input: clear errors naming the thing --------------------------------------------------------

@pytest.fixture
def onnx_predictor(env):
    return Predictor.load(env["export"], backend="onnx", precision="fp32")


def test_bad_images(env, onnx_predictor, tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageError, match="missing.png"):
        onnx_predictor.predict(missing)
    corrupt = tmp_path / "corrupt.png"
    data = Path(env["test_paths"][0]).read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt.png"):
        onnx_predictor.predict([env["test_paths"][1], corrupt])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png"):
        onnx_predictor.predict(text)
    with pytest.raises(ImageError, match=r"input 1 .*\(32, 32, 2\)"):
        onnx_predictor.predict([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 2), np.uint8)])
    with pytest.raises(ImageError, match=r"model_fp32.onnx.*\(N, 32, 32, 3\)"):
        onnx_predictor.predict(np.zeros((2, 16, 16, 3), np.float32), preprocessed=True)
    with pytest.raises(ImageError, match="neither an image"):
        onnx_predictor.predict(np.zeros((1, 2, 32, 32, 3), np.uint8))
    with pytest.raises(ImageError, match="no images"):
        onnx_predictor.predict([])


def test_missing_and_corrupt_models(env, tmp_path):
    with pytest.raises(ModelFileError, match="nowhere"):
        Predictor.load(tmp_path / "nowhere")
    folder = _copy(env["export"], tmp_path)
    lone = tmp_path / "lone.onnx"
    shutil.copy(folder / "model_fp32.onnx", lone)
    with pytest.raises(ManifestError, match="lone.onnx has no manifest.json"):
        Predictor.load(lone)
    (folder / "model_fp32.tflite").unlink()
    with pytest.raises(ModelFileError, match="model_fp32.tflite"):
        Predictor.load(folder, backend="tflite", precision="fp32")
    for name in ("model_fp32.onnx", "model_int8.tflite"):  # truncated, manifest updated to match: the runtime refuses
        path = folder / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        _edit_manifest(folder, lambda data: _entry(data, name).update(sha256=sha256_file(path), bytes=path.stat().st_size))
        with pytest.raises(ModelFileError, match=name):
            Predictor.load(path)
        with pytest.raises(ModelFileError, match=name):
            open_backend(path)


def test_manifest_that_does_not_match_the_model(env, tmp_path):
    folder = _copy(env["export"], tmp_path)
    onnx = folder / "model_fp32.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # one byte edited
    with pytest.raises(ManifestError, match=r"model_fp32.onnx does not match its manifest.*re-export"):
        Predictor.load(folder, backend="onnx")
    onnx.write_bytes(original[: len(original) // 2])  # truncated, manifest not updated
    with pytest.raises(ManifestError, match=r"model_fp32.onnx has \d+ bytes.*re-export"):
        Predictor.load(onnx)
    onnx.write_bytes(original)
    _edit_manifest(folder, lambda data: _entry(data, "model_int8.tflite").update(sha256="0" * 64))
    with pytest.raises(ManifestError, match="model_int8.tflite does not match its manifest"):
        Predictor.load(folder, precision="int8")  # on any CPU (without a dot product the rule picks fp32)

    def bigger_images(data):  # manifest says 48x48 inputs and preprocessing: the model takes 32x32
        data["preprocess"].update(height=48, width=48)
        for artifact in data["artifacts"]:
            artifact["inputs"][0]["shape"] = [-1, 48, 48, 3]

    _edit_manifest(folder, bigger_images)
    with pytest.raises(ManifestError, match=r"model_fp32.onnx takes \[-1, 32, 32, 3\].*manifest says \[-1, 48, 48, 3\]"):
        Predictor.load(folder, backend="onnx")
    shutil.rmtree(folder)
    folder = _copy(env["export"], tmp_path)
    _edit_manifest(folder, lambda data: data.update(labels=["red", "blue", "green"]))
    with pytest.raises(ManifestError, match="outputs 2 classes but its manifest lists 3 labels"):
        Predictor.load(folder)


# --- edgecnn predict ------------------------------------------------------------------------------

@pytest.fixture
def image_folder(env, tmp_path) -> Path:
    """Three good images (one in a subfolder), a corrupt PNG and a text file that is skipped."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    targets = [folder / "a.png", folder / "c.png", folder / "sub" / "d.png"]
    for source, target in zip(env["test_paths"], targets):
        shutil.copy(source, target)
    data = targets[0].read_bytes()
    (folder / "b_corrupt.png").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_verb_on_a_folder_with_a_corrupt_image(env, image_folder):
    result = CliRunner().invoke(main, ["predict", str(env["export"]), str(image_folder), "--topk", "2"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stdout.strip().splitlines()
    assert [Path(line.split("\t")[0]).relative_to(image_folder).as_posix() for line in lines] == ["a.png", "c.png", "sub/d.png"]
    expected = [env["labels"][i] for i in np.argmax(env["keras_probabilities"][:3], axis=1)]
    assert [line.split("\t")[1] for line in lines] == expected
    assert all(0.0 <= float(line.split("\t")[2]) <= 1.0 for line in lines)
    assert "b_corrupt.png" in result.stderr and "error:" in result.stderr


def test_predict_verb_saves_annotated_copies_without_a_header_in_a_pipe(env, image_folder, tmp_path):
    (image_folder / "b_corrupt.png").unlink()
    out = tmp_path / "annotated"
    result = CliRunner().invoke(main, ["predict", str(env["export"]), str(image_folder), "--save", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and not lines[0].startswith("path\t")  # CliRunner's stdout is no terminal
    saved = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png"))
    assert saved == ["a.png", "c.png", "sub/d.png"]
    original = np.asarray(Image.open(image_folder / "a.png").convert("RGB"))
    annotated = np.asarray(Image.open(out / "a.png").convert("RGB"))
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)  # the label is drawn on it
    assert f"annotated images saved to {out}" in result.stderr
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    result = CliRunner().invoke(main, ["predict", str(env["export"]), str(image_folder), "--save", str(blocked)])
    assert result.exit_code == 2 and "--save" in result.stderr and result.stdout == ""


def test_predict_verb_json_lines(env, image_folder):
    (image_folder / "b_corrupt.png").unlink()
    files = [str(image_folder / "c.png"), str(image_folder / "a.png")]
    result = CliRunner().invoke(main, ["predict", str(env["export"] / "model_fp32.onnx"), *files, "--json", "--topk", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [row["path"] for row in rows] == files
    probabilities = env["keras_probabilities"]
    for row, keras_row in zip(rows, (probabilities[1], probabilities[0])):
        assert row["label"] == env["labels"][int(np.argmax(keras_row))]
        assert abs(row["score"] - float(keras_row.max())) < 1e-4
        assert [entry["label"] for entry in row["topk"]] == [env["labels"][i] for i in np.argsort(-keras_row)]


def test_predict_verb_bad_model_and_missing_images(env, tmp_path):
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "no_export"), env["test_paths"][0]])
    assert result.exit_code == 2 and "no_export" in result.stderr and "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["predict", str(env["export"]), str(empty), str(tmp_path / "gone.png"), env["test_paths"][0]])
    assert result.exit_code == 2
    assert "empty holds no images" in result.stderr and "gone.png does not exist" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 1  # the good image is still predicted
    assert "Examples" in CliRunner().invoke(main, ["predict", "--help"]).output


def test_no_measurement_rule_follows_the_cpu_and_the_model_size(env, tmp_path, cpu):
    """Without a selection measured on this CPU: int8 where the CPU has an int8 dot product; without one,
    ONNX int8 for a model of at least ONNX_INT8_WITHOUT_DOT_PRODUCT_MACS (export records the MACs) whose int8
    graph has no float node between int8 layers (export records those too), fp32 otherwise."""
    from edge_cnn.runtime.artifacts import ONNX_INT8_WITHOUT_DOT_PRODUCT_MACS as LARGE

    import dataclasses

    from onnxruntime.quantization import quantize_dynamic

    folder = _copy(env["export"], tmp_path)
    quantize_dynamic(str(folder / "model_fp32.onnx"), str(folder / "model_int8.onnx"))
    onnx_int8 = dataclasses.asdict(_artifact(folder, "model_int8.onnx", "int8", lambda info: "probabilities"))
    onnx_int8["optimization"] = {"float_nodes": 0}
    _edit_manifest(folder, lambda data: data.update(macs=LARGE // 100, artifacts=[*data["artifacts"], onnx_int8]))

    def onnx_fp32_timed_fastest_at_export(data):
        for artifact in data["artifacts"]:
            artifact["parity"]["latency_p50_ms"] = 0.001 if (artifact["format"], artifact["precision"]) == ("onnx", "fp32") else 9.0

    _edit_manifest(folder, onnx_fp32_timed_fastest_at_export)
    cpu(AVX2_CPU)
    plain = Predictor.load(folder)  # LiteRT's fp32 file, whatever the export machine timed
    assert plain.kind == "tflite fp32" and "no int8 dot product" in plain.describe()
    assert Predictor.load(folder, backend="onnx").kind == "onnx fp32"
    assert Predictor.load(folder, precision="int8").kind == "tflite int8"  # asked for: given
    _edit_manifest(folder, lambda data: data.update(macs=LARGE))
    large = Predictor.load(folder)
    assert large.kind == "onnx int8" and "the model is large (" in large.describe()
    assert Predictor.load(folder, backend="tflite").kind == "tflite fp32"  # LiteRT's int8 does not pay there
    _edit_manifest(folder, lambda data: data.update(macs=LARGE - 1))
    assert Predictor.load(folder).artifact.precision == "fp32"

    def float_nodes(count):
        def edit(data):
            data.update(macs=LARGE)
            data["artifacts"][-1]["optimization"] = {} if count is None else {"float_nodes": count}
        return edit

    _edit_manifest(folder, float_nodes(33))  # e.g. MobileFaceNet's PReLUs: int8 measured slower
    converting = Predictor.load(folder)
    assert converting.artifact.precision == "fp32" and "runs 33 nodes in float between int8 layers" in converting.reason
    _edit_manifest(folder, float_nodes(None))  # an export from before float nodes were recorded
    assert "re-export" in Predictor.load(folder).reason and Predictor.load(folder).artifact.precision == "fp32"
    _edit_manifest(folder, lambda data: data.pop("macs"))  # an export from before MACs were recorded
    unknown = Predictor.load(folder)
    assert unknown.artifact.precision == "fp32" and "size not in the manifest" in unknown.describe()
    cpu(VNNI_CPU)
    assert Predictor.load(folder).artifact.precision == "int8"
    _edit_manifest(folder, lambda data: data.update(macs="many"))
    with pytest.raises(ManifestError, match="macs"):
        Predictor.load(folder)


def test_selection_measured_on_this_cpu_is_used_and_ignored_elsewhere(env, tmp_path, cpu):
    from edge_cnn.machine import cpu_fingerprint
    from edge_cnn.selection import Choice, lookup, record

    folder = _copy(env["export"], tmp_path)
    record(folder, cpu_fingerprint(AVX2_CPU), AVX2_CPU, Choice("model_fp32.onnx", 1, 0.2), [], "2026-12-01")
    record(folder, cpu_fingerprint(VNNI_CPU), VNNI_CPU, Choice("model_int8.tflite", 2, 0.1), [], "2026-12-01")
    assert lookup(folder, cpu_fingerprint(AVX2_CPU)) == Choice("model_fp32.onnx", 1, 0.2)  # both devices kept
    cpu(AVX2_CPU)
    measured = Predictor.load(folder)
    assert (measured.kind, "measured on this CPU" in measured.reason) == ("onnx fp32", True)
    cpu({"model": "Another CPU", "flags": []})
    other = Predictor.load(folder)  # no entry for this fingerprint: the rule
    assert other.artifact.precision == "fp32" and "no int8 dot product" in other.reason
