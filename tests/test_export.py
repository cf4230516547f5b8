"""Export stage: round trips, parity, manifest, int8, QAT, pruning, clustering, failures and bad input."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError
from edge_cnn.export import export
from edge_cnn.io import sha256_file
from edge_cnn.keras import keras, layers, tf
from edge_cnn.manifest import load_manifest
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.run_dir import RunDir
from edge_cnn.backends import open_backend


def copy_run(tiny_run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes (hidden .NAME.XXXX.tmp*) still lying around."""
    return [p.name for p in folder.rglob(".*")]


def keras_probabilities(run: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    run_dir = RunDir(run)
    items = run_dir.read_split(split)
    x = run_dir.preprocess()([p for p, _ in items])
    return x, keras.models.load_model(run_dir.model_path).predict(x, verbose=0)


@pytest.fixture(scope="module")
def full_export(tiny_run_dir, tmp_path_factory):
    run = copy_run(tiny_run_dir, tmp_path_factory.mktemp("full"))
    result = export(run, format="tflite,onnx,saved_model", int8=True, fp16=True, dynamic_range=True)
    return run, result


def by_kind(result, format, precision):
    (artifact,) = result.manifest.find(format, precision)
    return artifact, result.manifest.artifact_path(artifact)


# --- fp32 / reduced precision round trips ------------------------------------------


def test_every_format_and_precision_is_exported_and_passes_parity(full_export):
    run, result = full_export
    produced = {(row["Format"], row["Precision"]): row["Status"] for row in result.rows}
    assert produced == {
        ("tflite", "fp32"): "OK",
        ("tflite", "fp16"): "OK",
        ("tflite", "dynamic"): "OK",
        ("tflite", "int8"): "OK",
        ("onnx", "fp32"): "OK",
        ("onnx", "int8"): "OK",
        ("saved_model", "fp32"): "OK",
    }
    assert result.manifest_path == run / "export" / "manifest.json"
    assert (run / "export" / "report.md").read_text().count("| OK |") == 7
    assert json.loads(result.report_json.read_text())["parity_data"] == "test split"


def test_float_artifacts_match_keras_within_tolerance(full_export):
    run, result = full_export
    x, reference = keras_probabilities(run)
    for format in ("tflite", "onnx"):
        artifact, path = by_kind(result, format, "fp32")
        assert artifact.parity["max_abs_diff"] <= 1e-4
        backend = open_backend(path)  # independent of export's own parity code
        assert backend.inputs[0].shape == (-1, 32, 32, 3)
        np.testing.assert_allclose(backend.run(x)[0], reference, atol=1e-4)
    artifact, path = by_kind(result, "saved_model", "fp32")
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    (output,) = served(image=tf.constant(x)).values()
    np.testing.assert_allclose(output.numpy(), reference, atol=1e-4)


def test_manifest_validates_and_hashes_match_files(full_export):
    run, result = full_export
    manifest = load_manifest(run / "export")
    assert manifest.labels == ["red", "blue"]
    assert manifest.preprocess == PreprocessSpec.load(run / "preprocess.json")
    assert manifest.source_sha256 == sha256_file(run / "model.keras")
    from edge_cnn.zoo.profile import profile

    assert manifest.macs == profile(keras.models.load_model(run / "model.keras"))["macs"] > 0  # the runtime's rule reads it
    assert len(manifest.artifacts) == 7
    recorded = {(a.format, a.precision): a.optimization.get("float_nodes") for a in manifest.artifacts}
    assert recorded[("onnx", "int8")] == 0 and recorded[("onnx", "fp32")] is None  # Conv-BN-ReLU: int8 throughout
    for artifact in manifest.artifacts:
        path = manifest.artifact_path(artifact)
        if artifact.format != "saved_model":
            assert artifact.sha256 == sha256_file(path)
            assert artifact.bytes == path.stat().st_size
        assert 0 < artifact.gzip_bytes
        assert artifact.inputs[0].shape[0] == -1 and artifact.inputs[0].layout == "NHWC"
        # post-training int8 outputs the logits (the runtime applies the softmax in float)
        assert artifact.outputs[0].meaning == ("logits" if artifact.precision == "int8" else "probabilities")
    assert leftovers(run / "export") == []


def test_int8_tflite_has_int8_io_with_scale_in_manifest(full_export):
    run, result = full_export
    artifact, path = by_kind(result, "tflite", "int8")
    backend = open_backend(path)
    assert backend.inputs[0].dtype == "int8" and backend.outputs[0].dtype == "int8"
    assert artifact.inputs[0].dtype == "int8"
    assert (artifact.inputs[0].quantization.scale, artifact.inputs[0].quantization.zero_point) == backend.inputs[
        0
    ].quantization
    assert (artifact.outputs[0].quantization.scale, artifact.outputs[0].quantization.zero_point) == backend.outputs[
        0
    ].quantization
    # quantize the test images by hand with the manifest's numbers: the device's view of the model
    x, reference = keras_probabilities(run)
    scale, zero_point = artifact.inputs[0].quantization.scale, artifact.inputs[0].quantization.zero_point
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    out = backend.run(q)[0].astype(np.float32)
    logits = (out - artifact.outputs[0].quantization.zero_point) * artifact.outputs[0].quantization.scale
    assert np.mean(logits.argmax(1) == reference.argmax(1)) >= 0.875
    assert artifact.bytes < by_kind(result, "tflite", "fp32")[0].bytes


def test_onnx_int8_is_qdq_and_agrees(full_export):
    import onnx

    _, result = full_export
    artifact, path = by_kind(result, "onnx", "int8")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert artifact.parity["agreement"] >= 87.5
    assert artifact.parity["accuracy_drop_pp"] <= 12.5


def test_onnx_per_tensor_fallback_note_stays_off_a_quiet_export(caplog):
    """onnxruntime's warning for a rank-1 weight it then quantizes per tensor is dropped; others pass."""
    import logging

    from edge_cnn.export.onnx_quant import per_tensor_fallback_quiet

    with caplog.at_level(logging.WARNING), per_tensor_fallback_quiet():
        logging.warning("Axis 1 is out-of-range for weight 'gdconv_bn/mul' with rank 1")
        logging.warning("Calibration data is empty")
    assert [record.getMessage() for record in caplog.records] == ["Calibration data is empty"]
    logging.warning("Axis 1 is out-of-range for weight 'w' with rank 1")  # outside the block: not dropped
    assert len(caplog.records) == 2


def test_onnx_float_ops_leave_those_nodes_float_in_a_mixed_int8_graph(tiny_run_dir, tmp_path):
    """--onnx-float-ops Conv: every Conv of the ONNX int8 model reads float weights (no DequantizeLinear
    feeds them) while the graph is still int8 elsewhere, passes parity, and the manifest says so."""
    import onnx

    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, int8=True, format="onnx", onnx_float_ops="Conv", out=str(tmp_path / "mixed"))
    artifact, path = by_kind(result, "onnx", "int8")
    graph = onnx.load(str(path)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    initializers = {tensor.name for tensor in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 2 and all(node.input[1] in initializers - dequantized for node in convs)
    assert "QuantizeLinear" in {node.op_type for node in graph.node}  # the rest is still int8
    assert artifact.status == "OK" and artifact.optimization["float_ops"] == ["Conv"]
    assert artifact.optimization["float_nodes"] > 0  # the float convolutions sit between int8 layers


def test_float_nodes_finds_depthwise_convolutions_and_refuses_absent_ops():
    import onnx
    from onnx import helper

    from edge_cnn.export.onnx_quant import float_nodes

    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="pointwise"),
             helper.make_node("Conv", ["a", "w2"], ["b"], name="depthwise", group=8),
             helper.make_node("MaxPool", ["b"], ["y"], name="pool", kernel_shape=[2, 2])]
    model = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                                                [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]))
    assert float_nodes(model, ("DepthwiseConv",)) == ["depthwise"]
    assert float_nodes(model, ("Conv", "MaxPool")) == ["pointwise", "pool"]
    with pytest.raises(EdgeCNNError, match=r"Gemm: no such node .*\(it has Conv, DepthwiseConv, MaxPool\)"):
        float_nodes(model, ("Gemm",))


def test_requantized_float_nodes_are_those_between_int8_layers():
    """tf2onnx's PReLU (Relu(x) - alpha * Relu(-x)) leaves Neg in float inside a QDQ graph: counted. The input's
    Transpose (straight into a QuantizeLinear) and a float head after the last one are not."""
    import onnx
    from onnx import helper

    from edge_cnn.export.onnx_quant import requantized_float_nodes

    def qdq(name, source, target):
        return [helper.make_node("QuantizeLinear", [source, "s", "z"], [f"{name}_q"], name=f"{name}_quantize"),
                helper.make_node("DequantizeLinear", [f"{name}_q", "s", "z"], [target], name=f"{name}_dequantize")]

    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="layout", perm=[0, 3, 1, 2]), *qdq("in", "t", "t_dq"),
             helper.make_node("Conv", ["t_dq", "w"], ["c"], name="conv"), *qdq("c", "c", "c_dq"),
             helper.make_node("Neg", ["c_dq"], ["n"], name="neg"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), *qdq("r", "r", "r_dq"),
             helper.make_node("Conv", ["r_dq", "w"], ["d"], name="conv2"), *qdq("d", "d", "d_dq"),
             helper.make_node("Softmax", ["d_dq"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    assert requantized_float_nodes(helper.make_model(graph)) == ["neg"]


def test_onnx_float_ops_need_post_training_onnx_int8(tiny_run_dir, tmp_path):
    for case, args in enumerate((["--onnx-float-ops", "Conv"], ["--int8", "--qat", "--onnx-float-ops", "Conv"],
                                 ["--int8", "--format", "tflite", "--onnx-float-ops", "Conv"])):
        outcome = CliRunner().invoke(main, ["export", str(copy_run(tiny_run_dir, tmp_path / str(case))), *args])
        assert outcome.exit_code == 2 and "--onnx-float-ops shapes the post-training ONNX int8" in outcome.output, args


# --- optimization ----------------------------------------------------------------------


def test_qat_gives_int8_artifacts_without_second_quantization(tiny_run_dir, tmp_path, monkeypatch):
    import onnx

    from edge_cnn.export import onnx_quant

    def forbidden(*args, **kwargs):
        raise AssertionError("quantize_static must not run on a QAT graph")

    monkeypatch.setattr(onnx_quant, "quantize_static", forbidden)
    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, qat=True, qat_epochs=1)
    assert [(r["Format"], r["Precision"], r["Status"]) for r in result.rows] == [
        ("tflite", "int8", "OK"),
        ("onnx", "int8", "OK"),
    ]
    tflite, tflite_path = by_kind(result, "tflite", "int8")
    assert tflite.optimization["method"] == "qat" and tflite_path.name == "model_qat_int8.tflite"
    assert open_backend(tflite_path).inputs[0].dtype == "int8"
    _, onnx_path = by_kind(result, "onnx", "int8")
    graph = onnx.load(str(onnx_path)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    produced_by = {output: node for node in graph.node for output in node.output}
    for node in graph.node:  # a second quantization pass would put Q right after DQ
        if node.op_type == "QuantizeLinear" and node.input[0] in produced_by:
            assert produced_by[node.input[0]].op_type != "DequantizeLinear"


def test_qat_refuses_a_model_that_was_never_trained(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    trained = keras.models.load_model(run / "model.keras")
    untrained = keras.models.clone_model(trained)
    untrained.save(run / "model.keras")
    with pytest.raises(EdgeCNNError, match="never trained"):
        export(run, qat=True)


def test_pruning_reaches_the_measured_target_sparsity(tiny_run_dir, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, format=["tflite"], prune=0.5, prune_epochs=2)
    artifact, path = by_kind(result, "tflite", "fp32")
    facts = artifact.optimization
    assert facts["method"] == "prune" and facts["target_sparsity"] == 0.5
    assert abs(facts["measured_sparsity"] - 0.5) < 0.05
    assert set(facts["sparsity_per_layer"]) == {"conv0", "conv1", "predictions"}
    assert artifact.status == "OK" and artifact.parity["max_abs_diff"] <= 1e-4
    # count the zeros in the shipped file's conv kernels, not in export's own report
    interpreter = Interpreter(model_path=str(path))
    kernels = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if len(d["shape"]) == 4
        and d["shape"][0] in (8, 16)
        and d["dtype"] == np.float32
    ]
    assert kernels and all(abs(np.mean(k == 0) - 0.5) < 0.05 for k in kernels)


def test_clustering_leaves_at_most_n_values_per_kernel_and_keeps_the_source(tiny_run_dir):
    from edge_cnn.export import optimize

    run = RunDir(tiny_run_dir)
    model = keras.models.load_model(run.model_path)
    before = [w.copy() for w in model.get_weights()]
    x = run.preprocess()([p for p, _ in run.read_split("train")])
    y = np.array([label for _, label in run.read_split("train")])
    clustered, facts = optimize.cluster(model, x, y, clusters=4, epochs=1)
    for name in ("conv0", "conv1", "predictions"):
        assert np.unique(clustered.get_layer(name).kernel.numpy()).size <= 4
        assert facts["unique_weights_per_layer"][name] <= 4
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # clone, not mutated
    assert np.mean(clustered.predict(x, verbose=0).argmax(1) == y) >= 0.9  # still does the task


@pytest.mark.parametrize("method", ["prune", "quantization_aware"])
def test_optimizations_leave_the_source_model_untouched(method, tiny_run_dir):
    from edge_cnn.export import optimize

    run = RunDir(tiny_run_dir)
    model = keras.models.load_model(run.model_path)
    before = [w.copy() for w in model.get_weights()]
    x = run.preprocess()([p for p, _ in run.read_split("train")])
    y = np.array([label for _, label in run.read_split("train")])
    target = 0.5 if method == "prune" else None
    optimized, _ = optimize.prune(model, x, y, target, 1) if target else optimize.quantization_aware(model, x, y, 1)
    assert optimized is not model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_optimization_refuses_non_tf_keras_models():
    from edge_cnn.export import optimize

    with pytest.raises(EdgeCNNError, match="tf_keras"):
        optimize.require_tf_keras(object())


# --- failures ------------------------------------------------------------------------------


def test_unconvertible_op_fails_the_onnx_artifact_loudly():
    from edge_cnn.export.onnx import ConversionError, convert_onnx

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, layers.Lambda(tf.math.lgamma)(inputs))
    with pytest.raises(ConversionError, match="Lgamma"):
        convert_onnx(model)


def test_a_failing_format_does_not_block_the_others(tiny_run_dir, tmp_path, monkeypatch):
    import tf2onnx

    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(tf2onnx.convert, "from_keras", broken)
    run = copy_run(tiny_run_dir, tmp_path)
    outcome = CliRunner().invoke(main, ["export", str(run)])
    assert outcome.exit_code == 1, outcome.output
    assert "converter exploded" in outcome.output
    report = json.loads((run / "export" / "report.json").read_text())
    statuses = {(r["Format"], r["Precision"]): r["Status"] for r in report["rows"]}
    assert statuses == {("tflite", "fp32"): "OK", ("onnx", "fp32"): "FAILED"}
    manifest = load_manifest(run / "export")
    assert [a.format for a in manifest.artifacts] == ["tflite"]
    assert (run / "export" / "model_fp32.tflite").is_file()
    assert not list((run / "export").glob("*.onnx")) and leftovers(run / "export") == []


def test_an_artifact_failing_after_it_was_written_leaves_no_file(tiny_run_dir, tmp_path, monkeypatch):
    from edge_cnn.export import parity

    real_load = parity.load_artifact

    def load(path, format, *keras_outputs, **options):
        assert path.is_file() and path.name.startswith(".")  # written to a temporary name first
        if format == "onnx":
            raise RuntimeError("runtime refused it")
        return real_load(path, format, *keras_outputs, **options)

    monkeypatch.setattr(parity, "load_artifact", load)
    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, out=tmp_path / "out")
    assert [r["Status"] for r in result.rows] == ["OK", "FAILED"]
    assert "runtime refused it" in result.rows[1]["Note"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json",
        "model_fp32.tflite",
        "report.json",
        "report.md",
    ]


def test_bare_keras_file_calibrates_on_an_image_folder_with_float_io(tiny_run_dir, tmp_path, square_images):
    result = export(
        tiny_run_dir / "model.keras",
        out=tmp_path / "bare",
        format=["tflite"],
        int8=True,
        preprocess=tiny_run_dir / "preprocess.json",
        calib_data=square_images,
        calib=16,
        float_io=True,
    )
    assert [r["Status"] for r in result.rows] == ["OK", "OK"]
    int8 = result.manifest.find("tflite", "int8")[0]
    assert int8.inputs[0].dtype == "float32" and int8.inputs[0].quantization is None  # --float-io
    assert result.summary["parity_data"].startswith("--calib-data") and result.summary["calibration_images"] == 16
    assert result.rows[0]["Test accuracy (%)"] is None and result.rows[1]["Agreement (%)"] >= 90
    assert load_manifest(tmp_path / "bare").labels == ["class0", "class1"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_run", "does not exist"),
        ("no_preprocess", "no preprocess.json"),
        ("unknown_format", "format coreml is unknown"),
        ("truncated_keras", "cannot be loaded"),
        ("bare_without_preprocess", "needs --preprocess"),
        ("bare_int8_without_calibration", "--calib-data"),
        ("fp16_without_tflite", "a precision of tflite only"),
        ("qat_and_prune", "exclusive"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(case, message, tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    preprocess = ["--preprocess", str(run / "preprocess.json")]
    if case == "missing_run":
        args = [str(tmp_path / "nowhere")]
    elif case == "no_preprocess":
        (run / "preprocess.json").unlink()
        args = [str(run)]
    elif case == "unknown_format":
        args = [str(run), "--format", "tflite,coreml"]
    elif case == "truncated_keras":
        data = (run / "model.keras").read_bytes()
        (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
        args = [str(tmp_path / "cut.keras"), *preprocess]
    elif case == "bare_without_preprocess":
        args = [str(run / "model.keras")]
    elif case == "bare_int8_without_calibration":
        args = [str(run / "model.keras"), *preprocess, "--int8"]
    elif case == "fp16_without_tflite":
        args = [str(run), "--format", "onnx", "--fp16"]
    else:
        args = [str(run), "--qat", "--prune", "0.5"]
    outcome = CliRunner().invoke(main, ["export", *args])
    assert outcome.exit_code == 2, outcome.output
    assert message in outcome.output
    assert not (run / "export").exists() and not (tmp_path / "cut_export").exists()


def test_cli_recipe_keys_are_flag_names(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    recipe = tmp_path / "export.yaml"
    recipe.write_text("format: tflite\nout: " + str(tmp_path / "from_recipe") + "\n")
    outcome = CliRunner().invoke(main, ["export", str(run), "--recipe", str(recipe)])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads((tmp_path / "from_recipe" / "report.json").read_text())
    assert [(r["Format"], r["Status"]) for r in report["rows"]] == [("tflite", "OK")]
    assert "Max abs diff" not in outcome.output and "Max abs diff" in report["rows"][0]  # key columns on the terminal
    wide = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "--wide", "--out", str(tmp_path / "wide")])
    assert wide.exit_code == 0 and "Max abs diff" in wide.output, wide.output
    folder = tmp_path / "from_recipe"
    assert f"next:     edgecnn predict {folder} IMAGE" in outcome.output  # the classify task's next command
    assert f"edgecnn bench {folder} --select" in outcome.output


def test_cli_help_shows_examples():
    outcome = CliRunner().invoke(main, ["export", "--help"])
    assert outcome.exit_code == 0
    assert "edgecnn export runs/ped --int8" in outcome.output and "--calib-method" in outcome.output


def test_grouped_convolutions_convert_to_onnx(tmp_path):
    """ResNeXt's grouped Conv2D must not be left as an unconvertible PartitionedCall."""
    import numpy as np

    from edge_cnn.export.onnx import convert_onnx, unconverted_ops
    from edge_cnn.keras import keras, layers
    from edge_cnn.backends import open_backend

    inputs = keras.Input((8, 8, 8), name="image")
    x = layers.Conv2D(8, 3, padding="same", groups=4, use_bias=False)(inputs)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    proto = convert_onnx(model)
    assert unconverted_ops(proto) == []
    assert "Conv" in {node.op_type for node in proto.graph.node}
    path = tmp_path / "grouped.onnx"
    path.write_bytes(proto.SerializeToString())
    x = np.random.default_rng(0).random((2, 8, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(open_backend(path).run(x)[0], model(x).numpy(), atol=1e-5)


# --- embedding output ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding_export(tiny_run_dir, tmp_path_factory):
    run = copy_run(tiny_run_dir, tmp_path_factory.mktemp("embedding"))
    return run, export(run, format="tflite,onnx", int8=True, embedding=True)


def head_pool(model, x: np.ndarray) -> np.ndarray:
    return keras.Model(model.input, model.get_layer("head_pool").output).predict(x, verbose=0)


def centred_and_normalised(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    centred = features - centre
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def keras_embeddings(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Test-split inputs and the Keras head_pool features minus their training-split mean, L2-normalised."""
    x, _ = keras_probabilities(run)
    x_train, _ = keras_probabilities(run, "train")
    model = keras.models.load_model(RunDir(run).model_path)
    return x, centred_and_normalised(head_pool(model, x), head_pool(model, x_train).mean(axis=0))


def test_embedding_adds_a_second_output_with_its_meaning(embedding_export):
    run, result = embedding_export
    assert {(r["Format"], r["Precision"]): r["Status"] for r in result.rows} == {
        ("tflite", "fp32"): "OK", ("tflite", "int8"): "OK", ("onnx", "fp32"): "OK", ("onnx", "int8"): "OK"
    }
    for artifact in result.manifest.artifacts:
        shapes = {o.meaning: o.shape for o in artifact.outputs}
        class_output = "logits" if artifact.precision == "int8" else "probabilities"
        assert shapes == {class_output: [-1, 2], "embedding": [-1, 16]}, artifact.path
        distance = artifact.parity["embedding_max_cosine_distance"]
        assert distance < (1e-5 if artifact.precision == "fp32" else 0.02), artifact.path
        centring = artifact.optimization["embedding"]
        assert centring["centred"] is True and centring["centre_images"] == "training split"
        assert centring["centre_count"] == len(RunDir(run).read_split("train")), artifact.path
    (int8_tflite,) = result.manifest.find("tflite", "int8")
    (embedding,) = [o for o in int8_tflite.outputs if o.meaning == "embedding"]
    assert embedding.dtype == "int8" and embedding.quantization.scale > 0
    assert -128 < embedding.quantization.zero_point < 127  # a signed range: centred values go both ways


def test_exported_embedding_is_centred_on_the_training_split_mean(embedding_export):
    """The raw embedding output of every artifact averages to ~0 over the training split: the graph
    subtracts that split's mean (computed here independently), not the test split's or none."""
    from edge_cnn.export.parity import load_artifact

    run, result = embedding_export
    x_train, _ = keras_probabilities(run, "train")
    model = keras.models.load_model(RunDir(run).model_path)
    features = head_pool(model, x_train)
    train_mean = np.linalg.norm(features.mean(axis=0))
    assert features.min() >= 0 and train_mean > 0.1  # post-ReLU: every feature vector in one orthant
    for artifact in result.manifest.artifacts:
        loaded = load_artifact(result.manifest.artifact_path(artifact), artifact.format)
        position = [o.meaning for o in artifact.outputs].index("embedding")
        raw = loaded.raw(loaded.prepare(x_train))[position]
        quant = artifact.outputs[position].quantization  # the runtime's dequantization (TFLite int8 only)
        values = raw.astype(np.float32) if quant is None else (raw.astype(np.float32) - quant.zero_point) * quant.scale
        left = np.linalg.norm(values.mean(axis=0))
        assert left < (1e-4 if artifact.precision == "fp32" else 0.02 * train_mean), artifact.path
        assert values.min() < 0 < values.max(), artifact.path


def test_embedding_export_keeps_probability_parity(embedding_export):
    from edge_cnn.runtime import Predictor

    run, result = embedding_export
    x, reference = keras_probabilities(run)
    for format in ("tflite", "onnx"):
        artifact, _ = by_kind(result, format, "fp32")
        assert artifact.parity["max_abs_diff"] <= 1e-4 and artifact.parity["agreement"] == 100.0
        predictor = Predictor.load(run / "export", backend=format, precision="fp32")
        np.testing.assert_allclose(predictor.probabilities(x, preprocessed=True), reference, atol=1e-4)


def test_predictor_embed_matches_the_centred_normalised_keras_head_pool(embedding_export):
    from edge_cnn.runtime import Predictor

    run, _ = embedding_export
    x, reference = keras_embeddings(run)
    for format in ("tflite", "onnx"):
        fp32 = Predictor.load(run / "export", backend=format, precision="fp32").embed(x, preprocessed=True)
        np.testing.assert_allclose(fp32, reference, atol=1e-4)
        int8 = Predictor.load(run / "export", backend=format, precision="int8").embed(x, preprocessed=True)
        assert np.min(np.sum(int8 * reference, axis=1)) > 0.98, format


def test_embedding_without_head_pool_exits_2(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    features = layers.GlobalAveragePooling2D(name="pool")(layers.Conv2D(4, 3, name="conv")(inputs))
    keras.Model(inputs, layers.Dense(2, activation="softmax")(features)).save(tmp_path / "m.keras")
    PreprocessSpec(height=8, width=8).save(tmp_path / "preprocess.json")
    args = ["export", str(tmp_path / "m.keras"), "--preprocess", str(tmp_path / "preprocess.json"), "--embedding"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2
    assert "no 'head_pool' layer" in outcome.output and "--embedding" in outcome.output
    assert not (tmp_path / "m_export").exists()


def test_embedding_as_wide_as_the_classes_is_told_apart_from_the_probabilities(tmp_path, square_images):
    """16 classes and 16 head_pool values: TFLite's outputs differ neither by name nor by shape, end to end."""
    from conftest import tiny_classifier

    from edge_cnn.runtime import Predictor

    model = tiny_classifier((32, 32, 3), 16)
    model.save(tmp_path / "m.keras")
    spec = PreprocessSpec(height=32, width=32)
    spec.save(tmp_path / "preprocess.json")
    result = export(tmp_path / "m.keras", format="tflite", preprocess=tmp_path / "preprocess.json", embedding=True,
                    calib_data=square_images)
    (artifact,) = result.manifest.artifacts
    assert artifact.status == "OK" and artifact.parity["max_abs_diff"] <= 1e-4
    calibration = sorted(square_images.rglob("*.png"))  # no training split: centred on the --calib-data images
    assert artifact.optimization["embedding"]["centre_images"] == "--calib-data images"
    assert artifact.optimization["embedding"]["centre_count"] == len(calibration)
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    predictor = Predictor.load(result.manifest_path)
    np.testing.assert_allclose(predictor.probabilities(x, preprocessed=True), model.predict(x, verbose=0), atol=1e-4)
    expected = centred_and_normalised(head_pool(model, x), head_pool(model, spec(calibration)).mean(axis=0))
    np.testing.assert_allclose(predictor.embed(x, preprocessed=True), expected, atol=1e-4)


def test_embedding_of_a_bare_model_without_images_to_centre_on_exits_2(tmp_path):
    from conftest import tiny_classifier

    tiny_classifier((32, 32, 3), 2).save(tmp_path / "m.keras")
    PreprocessSpec(height=32, width=32).save(tmp_path / "preprocess.json")
    args = ["export", str(tmp_path / "m.keras"), "--preprocess", str(tmp_path / "preprocess.json"), "--embedding"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2
    assert "without a training split" in outcome.output and "--calib-data" in outcome.output
    assert not (tmp_path / "m_export").exists()


def test_same_shape_outputs_are_ordered_by_closeness_to_keras():
    """A file that lists (embedding, probabilities) under meaningless names is put back in Keras order."""
    from edge_cnn.export.parity import LoadedArtifact, resolve_same_shapes
    from edge_cnn.backends import TensorInfo

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 4)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(3), 6).astype(np.float32)
    embedding = rng.uniform(0, 5, (6, 3)).astype(np.float32)
    outputs = [TensorInfo(f"StatefulPartitionedCall:{i}", (-1, 3), "float32") for i in range(2)]
    swapped = LoadedArtifact(
        raw=lambda batch: [embedding[: len(batch)], probabilities[: len(batch)]],
        inputs=[TensorInfo("image", (-1, 4), "float32")],
        outputs=outputs,
        order=[0, 1],
    )
    resolved = resolve_same_shapes(swapped, ["predictions", "head_pool"], x, (probabilities, embedding))
    assert resolved.order == [1, 0]
    np.testing.assert_array_equal(resolved.predict(x), probabilities)
    kept = resolve_same_shapes(resolved, ["predictions", "head_pool"], x, (probabilities, embedding))
    assert kept.order == [1, 0]


def test_without_softmax_gives_the_logits_of_the_same_weights():
    """The int8 jobs convert the model cut before its softmax (a Dense softmax head or a Softmax layer),
    keeping any further output: softmax(logits) is the original model's answer."""
    from edge_cnn.export.surgery import without_softmax
    from edge_cnn.keras import layers
    from edge_cnn.numerics import softmax

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    pooled = layers.GlobalAveragePooling2D(name="head_pool")(layers.Conv2D(4, 3)(inputs))
    dense_head = keras.Model(inputs, [layers.Dense(3, activation="softmax", name="predictions")(pooled), pooled])
    scores = layers.Dense(3, name="scores")(pooled)
    softmax_layer = keras.Model(inputs, layers.Softmax(name="probabilities")(scores))
    for model in (dense_head, softmax_layer):
        cut = without_softmax(model)
        expected = model.predict(x, verbose=0)
        got = cut.predict(x, verbose=0)
        if isinstance(expected, list):
            np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)  # the embedding output stays as it was
            expected, got = expected[0], got[0]
        assert (got < 0).any() and not np.allclose(got.sum(axis=1), 1.0)  # logits, not probabilities
        np.testing.assert_allclose(softmax(got), expected, atol=1e-6)


def test_int8_logits_keep_the_ranking_a_quantized_softmax_loses(full_export):
    """The int8 TFLite artifact's probabilities (softmax of its int8 logits, computed by the runtime) take
    values between the 1/256 steps an int8 softmax output is limited to, and agree with Keras' ranking."""
    from edge_cnn.runtime import Predictor

    run, result = full_export
    x, reference = keras_probabilities(run)
    predictor = Predictor.load(run / "export", backend="tflite", precision="int8")
    probabilities = predictor.probabilities(x, preprocessed=True)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    off_grid = np.abs(probabilities * 256 - np.round(probabilities * 256)) > 1e-3
    assert off_grid.mean() > 0.5
    assert np.mean(probabilities.argmax(1) == reference.argmax(1)) >= 0.875


# --- channel pruning -------------------------------------------------------------------


def test_channel_pruned_model_trains_exports_and_passes_parity(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, prune_channels=0.5, prune_epochs=1)
    assert [row["Status"] for row in result.rows] == ["OK", "OK"]
    assert {row["File"] for row in result.rows} == {"model_channels50_fp32.tflite", "model_channels50_fp32.onnx"}
    facts = result.manifest.artifacts[0].optimization
    assert facts["method"] == "prune_channels" and len(facts["fine_tune_loss"]) == 1
    assert facts["channels_kept"] == {"conv0": {"kept": 4, "of": 8}, "conv1": {"kept": 8, "of": 16}}
    assert facts["macs_after"] < facts["macs_before"] and facts["params_after"] < facts["params_before"]
    assert facts["augment"] == {}  # a run without config.yaml: plain fine-tuning


def test_a_long_channel_plan_names_its_files_by_layer_count_and_hash():
    """A count for each of MobileNetV2's 19 prunable layers, written out, made a folder name past the file
    system's 255 characters: beyond 40 characters a plan is named by its layer count and a hash."""
    from edge_cnn.export.config import MAX_PLAN_LABEL, channel_plan_label

    plan = {f"block{i}_expand_conv": 8 * i for i in range(1, 20)}
    label = channel_plan_label(plan)
    assert label.startswith("19layers-") and len(label) <= MAX_PLAN_LABEL
    assert channel_plan_label(dict(plan, block1_expand_conv=16)) != label  # another plan, another name
    assert channel_plan_label({"stage1_conv": 8, "stage2_conv": 16, "stage3_conv": 48}) == "8-16-48"
    assert channel_plan_label(0.5) == "50"


def test_per_layer_channel_counts_export_the_epoch_best_on_validation(tiny_run_dir, tmp_path):
    """LAYER=N keeps N channels of that convolution only; the fine-tune keeps its lowest-validation-loss epoch,
    and the artifact has that epoch's validation loss."""
    from edge_cnn.runtime import Predictor
    from edge_cnn.run_dir import RunDir

    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, prune_channels="conv0=3", prune_epochs=3, format="tflite")
    assert [row["File"] for row in result.rows] == ["model_channels_3_fp32.tflite"]
    facts = result.manifest.artifacts[0].optimization
    assert facts["channels_kept"] == {"conv0": {"kept": 3, "of": 8}}
    assert len(facts["val_loss_per_epoch"]) == len(facts["val_accuracy_per_epoch"]) == 3
    assert facts["val_loss_per_epoch"][facts["kept_epoch"] - 1] == min(facts["val_loss_per_epoch"])
    paths, labels = zip(*RunDir(run).read_split("val"))
    probabilities = Predictor.load(run / "export", backend="tflite", precision="fp32").probabilities(list(paths))
    loss = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    assert loss == pytest.approx(min(facts["val_loss_per_epoch"]), abs=1e-3)


def test_best_on_validation_restores_the_best_epochs_weights():
    """After fit, the model holds the weights it had at the end of its lowest-validation-loss epoch, not the
    last epoch's."""
    from edge_cnn.export.optimize import BestOnValidation
    from edge_cnn.keras import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    snapshots = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    weights: list = []
    keeper = BestOnValidation(x[:16], y[:16])
    model.fit(x[16:], y[16:], epochs=5, batch_size=8, verbose=0, callbacks=[snapshots, keeper])
    best = keeper.facts()["kept_epoch"]
    assert best == 1 + keeper.losses.index(min(keeper.losses))
    for restored, kept in zip(model.get_weights(), weights[best - 1]):
        np.testing.assert_array_equal(restored, kept)
    assert best == 5 or not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights[-1]))


def test_channel_pruning_fine_tunes_with_the_runs_augmentation(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    (run / "config.yaml").write_text("hflip: true\nbrightness: 0.1\nmixup: 0.2\nretired_setting: 1\n")  # another version's
    result = export(run, prune_channels=0.5, prune_epochs=1, format="tflite")
    facts = result.manifest.artifacts[0].optimization
    assert facts["augment"] == {"horizontal_flip": True, "brightness": 0.1}  # mixup mixes labels: left out
    assert [row["Status"] for row in result.rows] == ["OK"]


def test_the_augmenter_works_in_model_space():
    """Pixels -> spec -> augmenter: a flip-only augmentation gives back each normalized image or its mirror."""
    from edge_cnn.data import AugmentConfig
    from edge_cnn.export.optimize import model_space_augmenter

    spec = PreprocessSpec(height=8, width=8, scale=1 / 127.5, mean=(1.0,), std=(0.5,))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3)).astype(np.uint8)
    batch = spec.normalize(pixels)
    augmented = np.asarray(model_space_augmenter(spec, AugmentConfig(horizontal_flip=True))(batch))
    same = np.isclose(augmented, batch, atol=1e-5).all(axis=(1, 2, 3))
    mirrored = np.isclose(augmented, batch[:, :, ::-1], atol=1e-5).all(axis=(1, 2, 3))
    assert (same | mirrored).all() and same.any() and mirrored.any()
    assert model_space_augmenter(spec, None) is None
    assert model_space_augmenter(dataclasses.replace(spec, layout="NCHW"), AugmentConfig(horizontal_flip=True)) is None


def test_distillation_loss_is_the_tempered_kl_times_t_squared():
    """Probabilities in, as the classifiers' softmax gives them: softmax(log p / T) is p^(1/T) renormalised."""
    from edge_cnn.export.distill import Distillation
    from edge_cnn.keras import keras

    teacher, student = np.array([[0.8, 0.2]], np.float32), np.array([[0.6, 0.4]], np.float32)
    soft = lambda p, t: p ** (1 / t) / np.sum(p ** (1 / t))  # noqa: E731
    expected = 4.0 * np.sum(soft(teacher, 2) * np.log(soft(teacher, 2) / soft(student, 2)))  # 0.112
    dummy = keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])
    distillation = Distillation(dummy, dummy, probabilities=True, temperature=2.0)
    assert float(distillation.soft_loss(teacher, student)) == pytest.approx(expected, rel=1e-5)
    assert float(distillation.soft_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_teaches_the_student_and_leaves_the_teacher():
    """With the soft targets alone, a student fine-tuned on labels that say nothing (all 0) still learns the
    teacher's decision; the teacher's weights do not move."""
    from edge_cnn.export.distill import Distillation
    from edge_cnn.keras import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    teacher.set_weights([np.array([[4.0, -4.0], [0, 0], [0, 0], [0, 0]], np.float32), np.zeros(2, np.float32)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    before = [w.copy() for w in teacher.get_weights()]
    distillation = Distillation(student, teacher, probabilities=True, soft_weight=1.0)
    distillation.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    distillation.fit(x, np.zeros(len(x), np.int64), epochs=30, batch_size=32, verbose=0)
    agreement = np.mean(student.predict(x, verbose=0).argmax(1) == teacher.predict(x, verbose=0).argmax(1))
    assert agreement > 0.95  # the labels alone would teach "always class 0": agreement ~0.5
    for kept, now in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(kept, now)


def test_distilled_channel_pruning_with_a_cosine_rate_exports_and_says_so(tiny_run_dir, tmp_path):
    run = copy_run(tiny_run_dir, tmp_path)
    result = export(run, prune_channels=0.5, prune_epochs=1, format="tflite", distill=True, prune_lr=1e-3)
    assert [row["Status"] for row in result.rows] == ["OK"]
    facts = result.manifest.artifacts[0].optimization
    assert facts["distillation"]["teacher"] == "the unpruned model" and len(facts["fine_tune_loss"]) == 1
    assert facts["learning_rate"] == "cosine decay from 0.001"


def test_the_cosine_fine_tune_rate_starts_at_the_rate_and_ends_at_zero():
    from edge_cnn.export.optimize import _fine_tune
    from edge_cnn.keras import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 2, 40)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    _fine_tune(model, x, y, 3, 0, probabilities=True, cosine_from=0.01)
    schedule = model.optimizer.get_config()["learning_rate"]["config"]
    assert schedule["initial_learning_rate"] == pytest.approx(0.01)
    assert schedule["decay_steps"] == int(model.optimizer.iterations) == 3 * 4  # 40 images, batches of 10
    assert float(model.optimizer.learning_rate) < 0.02 * 0.01  # the last step's rate: about 0


@pytest.mark.parametrize(
    "args, message",
    [(["--distill"], "use them with --prune-channels or --target-latency"),
     (["--prune-lr", "1e-3"], "use them with --prune-channels or --target-latency"),
     (["--prune-channels", "0.5", "--prune-lr", "0"], "must be a learning rate above 0"),
     (["--prune-channels", "1.5"], "between 0 and 1"), (["--prune-channels", "0.5", "--prune", "0.5"], "exclusive"),
     (["--prune-channels", "conv0=x"], "LAYER=CHANNELS_KEPT"), (["--prune-channels", "half"], "neither a fraction"),
     (["--prune-channels", "conv9=2"], "conv9 cannot lose channels"),
     (["--prune-channels", "conv0=99"], "more channels than the layer has")],
)
def test_bad_channel_pruning_exits_2(args, message, tiny_run_dir, tmp_path):
    outcome = CliRunner().invoke(main, ["export", str(copy_run(tiny_run_dir, tmp_path)), *args])
    assert outcome.exit_code == 2, outcome.output
    assert message in outcome.output


def test_dynamic_range_flag_and_its_deprecated_spelling(tmp_path):
    """`--dynamic` meant dynamic-range quantization here but dynamic input shapes in Ultralytics and
    torch.onnx: the flag is `--dynamic-range`, and the old spelling still works with a warning."""
    for flag, warned in (("--dynamic-range", False), ("--dynamic", True)):
        result = CliRunner().invoke(main, ["export", str(tmp_path), flag, "--format", "onnx"])
        assert result.exit_code == 2
        assert "error: --dynamic-range is a precision of tflite only" in result.output  # the flag reached the config
        assert ("--dynamic is deprecated" in result.output) == warned
