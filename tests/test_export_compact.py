"""Compact pass: short internal names in ONNX and TFLite artifacts, same outputs bit for bit."""

import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from click.testing import CliRunner
from onnx import TensorProto, helper

from conftest import tiny_classifier
from edge_cnn.cli import main
from edge_cnn.export import export
from edge_cnn.export.compact import compact_file, compact_onnx, compact_tflite
from edge_cnn.export.onnx import convert_onnx
from edge_cnn.export.onnx_quant import OnnxQuantOptions, quantize_onnx
from edge_cnn.export.tflite import convert_tflite
from edge_cnn.keras import keras
from edge_cnn.manifest import load_manifest
from edge_cnn.runtime.predictor import Predictor

SHAPE = (16, 16, 3)
ORT_LEVELS = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return tiny_classifier(SHAPE, 3, name="a_rather_long_model_name_like_the_zoo_builders_give")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (12, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_fp32(model):
    return convert_onnx(model)


@pytest.fixture(scope="module")
def onnx_int8(onnx_fp32, images, tmp_path_factory):
    path = tmp_path_factory.mktemp("qdq") / "int8.onnx"
    quantize_onnx(onnx_fp32, path, images, OnnxQuantOptions())
    return onnx.load(str(path))


def ort_outputs(proto: onnx.ModelProto, x: np.ndarray, level) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def internal_tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    for node in graph.node:
        names |= {name for name in [*node.input, *node.output] if name}
    return names - {value.name for value in [*graph.input, *graph.output]}


# --- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["onnx_fp32", "onnx_int8"])
def test_onnx_names_are_short_and_outputs_bit_identical(which, images, request):
    original = request.getfixturevalue(which)
    compacted = compact_onnx(original)
    assert compacted.ByteSize() < original.ByteSize() - 1000  # tf2onnx's names were > 1 kB here
    assert [v.name for v in compacted.graph.input] == [v.name for v in original.graph.input] == ["image"]
    assert [v.name for v in compacted.graph.output] == [v.name for v in original.graph.output]
    assert all(re.fullmatch(r"t\d+", name) for name in internal_tensor_names(compacted.graph))
    assert [n.name for n in compacted.graph.node] == [f"{n.op_type}_{i}" for i, n in enumerate(original.graph.node)]
    assert [n.op_type for n in compacted.graph.node] == [n.op_type for n in original.graph.node]
    assert not compacted.graph.value_info and not any(n.doc_string for n in compacted.graph.node)
    assert compacted.opset_import == original.opset_import
    for level in ORT_LEVELS:
        for before, after in zip(ort_outputs(original, images, level), ort_outputs(compacted, images, level)):
            assert before.dtype == after.dtype and np.array_equal(before, after)


def test_int8_onnx_keeps_its_quantization(onnx_int8):
    """Same QDQ nodes and the same initializer values (weights, scales, zero points), renamed only."""
    compacted = compact_onnx(onnx_int8)
    count = lambda proto, op: sum(n.op_type == op for n in proto.graph.node)  # noqa: E731
    assert count(compacted, "QuantizeLinear") == count(onnx_int8, "QuantizeLinear") > 0
    assert count(compacted, "DequantizeLinear") == count(onnx_int8, "DequantizeLinear") > 0
    arrays = lambda proto: sorted(  # noqa: E731
        (onnx.numpy_helper.to_array(t).tobytes(), t.data_type) for t in proto.graph.initializer
    )
    assert arrays(compacted) == arrays(onnx_int8)


def test_onnx_defaults_are_dropped_and_kept_names_never_collide():
    """A hand-made graph whose I/O is named like the short names: ``t0`` and ``t1`` stay the I/O's,
    an attribute equal to its schema default goes, a non-default one stays."""
    nodes = [
        helper.make_node("Relu", ["t0"], ["a_long_intermediate_name"], name="first", doc_string="why"),
        helper.make_node("Softmax", ["a_long_intermediate_name"], ["softmax_out"], name="second", axis=-1),
        helper.make_node("Softmax", ["softmax_out"], ["t1"], name="third", axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("t1", TensorProto.FLOAT, [2, 3])],
        value_info=[helper.make_tensor_value_info("softmax_out", TensorProto.FLOAT, [2, 3])],
    )
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    compacted = compact_onnx(original)
    assert [list(n.input) + list(n.output) for n in compacted.graph.node] == [
        ["t0", "t2"],
        ["t2", "t3"],
        ["t3", "t1"],
    ]
    assert [len(n.attribute) for n in compacted.graph.node] == [0, 0, 1]  # axis=-1 is Softmax-13's default
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    for level in ORT_LEVELS:
        assert np.array_equal(ort_outputs(original, x, level)[0], ort_outputs(compacted, x, level)[0])


def test_onnx_subgraphs_read_the_renamed_outer_tensors():
    """An If branch reads an outer intermediate tensor: the branch is renamed with the same mapping."""

    def branch(op: str, output: str) -> onnx.GraphProto:
        node = helper.make_node(op, ["outer_intermediate_tensor"], [output], name=f"{op}_in_branch")
        return helper.make_graph([node], op, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, [2, 3])])

    nodes = [
        helper.make_node("Relu", ["x"], ["outer_intermediate_tensor"]),
        helper.make_node(
            "If", ["flag"], ["y"], then_branch=branch("Identity", "then_out"), else_branch=branch("Neg", "else_out")
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    compacted = compact_onnx(original)
    for branch in compacted.graph.node[1].attribute:
        assert list(branch.g.node[0].input) == list(compacted.graph.node[0].output) == ["t0"]
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        before, after = (
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            for proto in (original, compacted)
        )
        assert np.array_equal(before, after) and np.array_equal(after, x.clip(0) if flag else -x.clip(0))


# --- TFLite ----------------------------------------------------------------------------------------


def litert(data: bytes) -> Interpreter:
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    return interpreter


def litert_output(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def io_details(interpreter: Interpreter) -> list[tuple]:
    """What the runtime and the manifest read: names, dtypes, shapes and quantization of the I/O."""
    details = interpreter.get_input_details() + interpreter.get_output_details()
    return [(d["name"], d["dtype"], tuple(d["shape_signature"]), d["quantization"]) for d in details]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflite_names_are_blank_inside_and_outputs_bit_identical(precision, model, images):
    original = convert_tflite(model, precision, calibration=images)
    compacted = compact_tflite(original)
    assert len(compacted) < len(original) - 500
    before, after = litert(original), litert(compacted)
    assert io_details(after) == io_details(before)
    assert after.get_signature_list() == before.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["predictions"]}
    }
    io_indices = {d["index"] for d in after.get_input_details() + after.get_output_details()}
    inside = [d["name"] for d in after.get_tensor_details() if d["index"] not in io_indices]
    assert inside and not any(inside)
    if precision == "int8":
        assert after.get_input_details()[0]["dtype"] == np.int8
        x = np.random.default_rng(1).integers(-128, 128, (1, *SHAPE)).astype(np.int8)
    else:
        x = images[:1]
    assert np.array_equal(litert_output(before, x), litert_output(after, x))
    signature = after.get_signature_runner("serving_default")
    assert np.array_equal(signature(image=x)["predictions"], litert_output(before, x))


def test_compact_file_refuses_an_unknown_format(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ValueError, match="saved_model"):
        compact_file(path, "saved_model")


# --- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tiny_run_dir, tmp_path_factory):
    """The tiny run exported twice with int8: compact (the default, Python API) and --keep-names (CLI)."""
    run = Path(shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("compact") / "run"))
    result = export(run, int8=True, calib=16)
    kept = run / "export_keep"
    cli = CliRunner().invoke(main, ["export", str(run), "--int8", "--calib", "16", "--keep-names", "--out", str(kept)])
    assert cli.exit_code == 0, cli.output
    return result, kept


def test_compact_export_passes_parity_and_loads_in_the_runtime(exports):
    result, _ = exports
    assert {(r["Format"], r["Precision"]): r["Status"] for r in result.rows} == {
        ("tflite", "fp32"): "OK",
        ("tflite", "int8"): "OK",
        ("onnx", "fp32"): "OK",
        ("onnx", "int8"): "OK",
    }
    folder = result.manifest_path.parent
    x = np.random.default_rng(2).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    for artifact in result.manifest.artifacts:
        predictor = Predictor.load(folder / artifact.path)
        assert predictor.probabilities(x, preprocessed=True).shape == (3, 2)
        if artifact.format == "onnx":
            graph = onnx.load(str(folder / artifact.path)).graph
            assert all(re.fullmatch(r"t\d+", name) for name in internal_tensor_names(graph))


def test_keep_names_keeps_the_converters_names_and_the_manifest_io(exports):
    result, kept = exports
    compact_folder = result.manifest_path.parent
    for artifact in result.manifest.artifacts:
        compacted, original = compact_folder / artifact.path, kept / artifact.path
        assert compacted.stat().st_size < original.stat().st_size
        if artifact.format == "onnx":
            names = internal_tensor_names(onnx.load(str(original)).graph)
            assert any("/" in name for name in names)  # tf2onnx's Keras paths
        else:
            assert all(d["name"] for d in litert(original.read_bytes()).get_tensor_details())
    kept_manifest = {(a.format, a.precision): a for a in load_manifest(kept).artifacts}
    x = np.random.default_rng(3).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    for artifact in result.manifest.artifacts:
        twin = kept_manifest[(artifact.format, artifact.precision)]
        assert artifact.inputs == twin.inputs and artifact.outputs == twin.outputs  # names, shapes, quantization
        compacted = Predictor.load(compact_folder / artifact.path).probabilities(x, preprocessed=True)
        original = Predictor.load(kept / artifact.path).probabilities(x, preprocessed=True)
        assert np.array_equal(compacted, original)
